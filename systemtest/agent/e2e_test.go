package agent_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/driftline/driftline/agent"
	"github.com/driftline/driftline/agent/agenttest"
	"github.com/driftline/driftline/hub/node/nodetest"
	"github.com/driftline/driftline/internal/testhelp"
)

// waitActive waits until the hub shows model at version active on device id.
func waitActive(t *testing.T, h *nodetest.Hub, id, model string, version int, state string) {
	t.Helper()
	var last map[string]deviceModel
	deadline := time.Now().Add(60 * time.Second)
	for {
		_, ms := device(h, id)
		last = ms
		if m, ok := ms[model]; ok && m.Active != nil && *m.Active == version && m.State == state {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("device %s never reported %s@%d %s: %+v", id, model, version, state, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestEndToEnd runs a real hub (embedded broker) and an agent: v1 is pulled, verified and
// activated; v2, sharing 95% of v1's bytes, costs at most 10% of its size on the wire; going
// back to v1 is reported rolled_back.
func TestEndToEnd(t *testing.T) {
	h := nodetest.Start(t)
	tok := enroll(h, "dev-1")
	v1data := agenttest.RandomBytes(6, 8<<20)
	v1, d1 := h.PushModel("clf", v1data, "", true)
	cfg := agenttest.Config(t, "dev-1", tok, []string{h.MQTTURL()}, h.Keys())
	a := agenttest.Start(t, cfg, agent.Options{})

	testhelp.WaitFor(t, 20*time.Second, "online", func() bool { on, _ := device(h, "dev-1"); return on })
	assign(h, "dev-1", "clf", v1)
	waitActive(t, h, "dev-1", "clf", v1, "active")
	if got := agenttest.FileDigest(t, agenttest.ModelFile(cfg.ModelDir, "clf")); got != d1 {
		t.Fatalf("current file %s, artifact %s", got, d1)
	}
	fetched1 := agenttest.Metric(t, a.Reg, agent.MetricFetchedBytes)
	if fetched1 < float64(len(v1data)) {
		t.Fatalf("fetched %v bytes for a %d-byte incompressible artifact", fetched1, len(v1data))
	}

	v2data := agenttest.Mutate(v1data, 0.05, 1)
	v2, d2 := h.PushModel("clf", v2data, "", true)
	assign(h, "dev-1", "clf", v2)
	waitActive(t, h, "dev-1", "clf", v2, "active")
	if got := agenttest.FileDigest(t, agenttest.ModelFile(cfg.ModelDir, "clf")); got != d2 {
		t.Fatalf("current file %s, v2 %s", got, d2)
	}
	delta := agenttest.Metric(t, a.Reg, agent.MetricFetchedBytes) - fetched1
	t.Logf("v2 (%d bytes, 5%% changed) moved %.0f bytes: %.1f%%; chunks reused %v", len(v2data), delta, 100*delta/float64(len(v2data)), agenttest.Metric(t, a.Reg, agent.MetricChunksReused))
	if delta > 0.10*float64(len(v2data)) {
		t.Fatalf("v2 moved %.0f bytes, more than 10%% of %d", delta, len(v2data))
	}
	if agenttest.Metric(t, a.Reg, agent.MetricChunksReused) == 0 {
		t.Fatal("no chunk reused")
	}
	_, ms := device(h, "dev-1")
	if p := ms["clf"].Previous; p == nil || *p != v1 {
		t.Fatalf("previous %v, want %d", p, v1)
	}

	// Back to v1: it is still on disk as previous, nothing is fetched.
	before := agenttest.Metric(t, a.Reg, agent.MetricFetchedBytes)
	assign(h, "dev-1", "clf", v1)
	waitActive(t, h, "dev-1", "clf", v1, "rolled_back")
	if got := agenttest.FileDigest(t, agenttest.ModelFile(cfg.ModelDir, "clf")); got != d1 {
		t.Fatalf("current file %s after going back, want v1 %s", got, d1)
	}
	if moved := agenttest.Metric(t, a.Reg, agent.MetricFetchedBytes) - before; moved > 64<<10 {
		t.Fatalf("going back to v1 moved %.0f bytes", moved)
	}
	if n := agenttest.Metric(t, a.Reg, agent.MetricActivations, "result", agent.ResultActive); n != 2 {
		t.Fatalf("%v successful activations, want 2", n)
	}
	am, err := a.ActiveModels()
	if err != nil || len(am) != 1 || am[0].Name != "clf" || am[0].Version != v1 {
		t.Fatalf("ActiveModels = %+v %v", am, err)
	}
	// Versions on disk: at most current and previous.
	entries, _ := os.ReadDir(filepath.Join(cfg.ModelDir, "clf"))
	dirs := 0
	for _, e := range entries {
		if e.IsDir() {
			dirs++
		}
	}
	if dirs > 2 {
		t.Fatalf("%d version directories on disk", dirs)
	}
}
