package agent_test

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/driftline/driftline/agent"
	"github.com/driftline/driftline/agent/modelstore"
)

// randomBytes returns n incompressible bytes from a generator seeded with seed: the same bytes
// on every run, so content-defined chunk boundaries (and the bytes a delta moves) are the same.
func randomBytes(seed uint64, n int) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{0: byte(seed), 1: byte(seed >> 8), 2: byte(seed >> 16), 31: 0x5a})
	_, _ = r.Read(b)
	return b
}

// mutate returns a copy of base with share of its bytes replaced, in a few contiguous runs (an
// edit of a real model file: some layers change, most do not).
func mutate(base []byte, share float64, runs int) []byte {
	out := bytes.Clone(base)
	per := int(float64(len(base))*share) / runs
	for i := 0; i < runs; i++ {
		off := (len(base) / runs) * i
		copy(out[off:off+per], randomBytes(uint64(1000+i), per))
	}
	return out
}

func fileDigest(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("sha256:%x", sha256.Sum256(b))
}

// modelFile is MODELDIR/NAME/current/model.
func modelFile(dir, name string) string {
	return filepath.Join(dir, name, modelstore.CurrentLink, modelstore.ModelFile)
}

// waitActive waits until the hub shows model at version active on device id.
func waitActive(t *testing.T, h *hub, id, model string, version int, state string) {
	t.Helper()
	var last map[string]deviceModel
	deadline := time.Now().Add(60 * time.Second)
	for {
		_, ms := h.device(id)
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
	h := startHub(t)
	tok := h.enroll("dev-1")
	v1data := randomBytes(6, 8<<20)
	v1, d1 := h.pushModel("clf", v1data)
	cfg := agentConfig(t, "dev-1", tok, []string{h.n.MQTTURL()}, h.keys())
	a := startAgent(t, cfg, agent.Options{})

	waitFor(t, 20*time.Second, "online", func() bool { on, _ := h.device("dev-1"); return on })
	h.assign("dev-1", "clf", v1)
	waitActive(t, h, "dev-1", "clf", v1, "active")
	if got := fileDigest(t, modelFile(cfg.ModelDir, "clf")); got != d1 {
		t.Fatalf("current file %s, artifact %s", got, d1)
	}
	fetched1 := metric(t, a.reg, agent.MetricFetchedBytes)
	if fetched1 < float64(len(v1data)) {
		t.Fatalf("fetched %v bytes for a %d-byte incompressible artifact", fetched1, len(v1data))
	}

	v2data := mutate(v1data, 0.05, 1)
	v2, d2 := h.pushModel("clf", v2data)
	h.assign("dev-1", "clf", v2)
	waitActive(t, h, "dev-1", "clf", v2, "active")
	if got := fileDigest(t, modelFile(cfg.ModelDir, "clf")); got != d2 {
		t.Fatalf("current file %s, v2 %s", got, d2)
	}
	delta := metric(t, a.reg, agent.MetricFetchedBytes) - fetched1
	t.Logf("v2 (%d bytes, 5%% changed) moved %.0f bytes: %.1f%%; chunks reused %v", len(v2data), delta, 100*delta/float64(len(v2data)), metric(t, a.reg, agent.MetricChunksReused))
	if delta > 0.10*float64(len(v2data)) {
		t.Fatalf("v2 moved %.0f bytes, more than 10%% of %d", delta, len(v2data))
	}
	if metric(t, a.reg, agent.MetricChunksReused) == 0 {
		t.Fatal("no chunk reused")
	}
	_, ms := h.device("dev-1")
	if p := ms["clf"].Previous; p == nil || *p != v1 {
		t.Fatalf("previous %v, want %d", p, v1)
	}

	// Back to v1: it is still on disk as previous, nothing is fetched.
	before := metric(t, a.reg, agent.MetricFetchedBytes)
	h.assign("dev-1", "clf", v1)
	waitActive(t, h, "dev-1", "clf", v1, "rolled_back")
	if got := fileDigest(t, modelFile(cfg.ModelDir, "clf")); got != d1 {
		t.Fatalf("current file %s after going back, want v1 %s", got, d1)
	}
	if moved := metric(t, a.reg, agent.MetricFetchedBytes) - before; moved > 64<<10 {
		t.Fatalf("going back to v1 moved %.0f bytes", moved)
	}
	if n := metric(t, a.reg, agent.MetricActivations, "result", agent.ResultActive); n != 2 {
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
