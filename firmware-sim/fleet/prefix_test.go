package fleet

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/driftline/driftline/firmware-sim/internal/hubtest"
	"github.com/driftline/driftline/hub/node"
)

// TestFleetTopicPrefix: fleet mode against a hub on a non-default topic prefix gives its agents
// the hub's prefix (from GET /api/v1/cluster), so a pinned model reaches them.
func TestFleetTopicPrefix(t *testing.T) {
	h := hubtest.StartWith(t, func(c *node.Config) { c.TopicPrefix = "site9/dl" })
	cfg := Config{
		Devices: 1, Hub: h.URL(), Token: h.Admin, Brokers: []string{h.MQTTURL()}, StateDir: t.TempDir(),
		SummaryEvery: time.Second, Out: &syncBuffer{}, Logger: hubtest.Logger(t), Heartbeat: time.Second,
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := Run(ctx, cfg)
		done <- err
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("fleet: %v", err)
		}
	}()
	hubtest.WaitFor(t, 20*time.Second, "the fleet device online", func() bool {
		ds := devices(h)
		return len(ds) == 1 && ds[0].Online
	})
	v := h.PushModel("m", []byte("weights for a prefixed fleet"), "", 0)
	h.Call(http.MethodPut, "/api/v1/devices/fleet-00001/models/m", map[string]any{"version": v}, http.StatusOK, nil)
	hubtest.WaitFor(t, 30*time.Second, "model active on the fleet agent", func() bool {
		ds := devices(h)
		if len(ds) != 1 {
			return false
		}
		m, ok := ds[0].Reported.Models["m"]
		return ok && m.Active != nil && *m.Active == v
	})
}
