package agent_test

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/driftline/driftline/agent"
	"github.com/driftline/driftline/agent/agenttest"
	"github.com/driftline/driftline/agent/devicedb"
	"github.com/driftline/driftline/hub/node/nodetest"
	"github.com/driftline/driftline/internal/testhelp"
)

// TestFleetOneDatabase runs many agents in one process on one shared database, one namespace
// each, the way firmware-sim's fleet mode does, with one registry (a device label per agent):
// every agent pulls and activates the same model from a real hub.
func TestFleetOneDatabase(t *testing.T) {
	const n = 25
	h := nodetest.Start(t)
	data := agenttest.RandomBytes(7, 256<<10)
	v, digest := h.PushModel("fleet", data, "", true)
	keys := h.Keys()
	dir := t.TempDir()
	db, err := devicedb.Open(filepath.Join(dir, "state"))
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait(); db.Close() })
	log := testhelp.Logger(t, slog.LevelWarn)
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("fleet-%02d", i)
		cfg := agenttest.Config(t, id, enroll(h, id), []string{h.MQTTURL()}, keys)
		cfg.ModelDir = filepath.Join(dir, "models", id)
		a, err := agent.New(cfg, db.Namespace(id), agent.Options{
			Logger:     log,
			Registerer: prometheus.WrapRegistererWith(prometheus.Labels{"device": id}, reg), Gatherer: reg,
			NoRSSGauge: i > 0,
		})
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() { defer wg.Done(); a.Run(ctx) }()
		assign(h, id, "fleet", v)
	}
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("fleet-%02d", i)
		waitActive(t, h, id, "fleet", v, "active")
		if got := agenttest.FileDigest(t, agenttest.ModelFile(filepath.Join(dir, "models", id), "fleet")); got != digest {
			t.Fatalf("%s runs %s", id, got)
		}
	}
	if got := agenttest.Metric(t, reg, agent.MetricActivations, "device", "fleet-07", "result", agent.ResultActive); got != 1 {
		t.Fatalf("fleet-07 activations %v", got)
	}
}
