package firmware_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/driftline/driftline/firmware-sim/fleet"
	"github.com/driftline/driftline/hub/node"
	"github.com/driftline/driftline/hub/node/nodetest"
	"github.com/driftline/driftline/internal/hubproc"
	"github.com/driftline/driftline/internal/testhelp"
)

// TestFleetTopicPrefix: fleet mode against a hub on a non-default topic prefix gives its agents
// the hub's prefix (from GET /api/v1/cluster), so a pinned model reaches them.
func TestFleetTopicPrefix(t *testing.T) {
	h := nodetest.Start(t, func(c *node.Config) { c.TopicPrefix = "site9/dl" })
	cfg := fleet.Config{
		Devices: 1, Hub: h.URL(), Token: h.Token, Brokers: []string{h.MQTTURL()}, StateDir: t.TempDir(),
		SummaryEvery: time.Second, Out: &hubproc.Output{}, Logger: testhelp.Logger(t), Heartbeat: time.Second,
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := fleet.Run(ctx, cfg)
		done <- err
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("fleet: %v", err)
		}
	}()
	testhelp.WaitFor(t, 20*time.Second, "the fleet device online", func() bool {
		ds := devices(h)
		return len(ds) == 1 && ds[0].Online
	})
	v, _ := h.PushModel("m", []byte("weights for a prefixed fleet"), `{"format":"test"}`, true)
	h.Call(http.MethodPut, "/api/v1/devices/fleet-00001/models/m", map[string]any{"version": v}, http.StatusOK, nil)
	testhelp.WaitFor(t, 30*time.Second, "model active on the fleet agent", func() bool {
		ds := devices(h)
		if len(ds) != 1 {
			return false
		}
		m, ok := ds[0].Reported.Models["m"]
		return ok && m.Active != nil && *m.Active == v
	})
}
