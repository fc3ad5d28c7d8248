package chaos

import (
	"os"
	"strconv"
	"testing"
	"time"
)

// TestChaos runs real hub processes under a seeded fault schedule and checks the history and the
// nodes. It runs with DRIFTLINE_INTEGRATION=1 (bounded: make ci) or CHAOS_DURATION (make soak);
// CHAOS_SEED replays a run, CHAOS_NODES sets the cluster size (3 or 5).
func TestChaos(t *testing.T) {
	dur := 30 * time.Second
	if d, err := time.ParseDuration(os.Getenv("CHAOS_DURATION")); err == nil {
		dur = d
	} else if os.Getenv("DRIFTLINE_INTEGRATION") != "1" {
		t.Skip("fault-injection run: set DRIFTLINE_INTEGRATION=1 (make ci) or CHAOS_DURATION (make soak)")
	}
	nodes := 3
	if n, err := strconv.Atoi(os.Getenv("CHAOS_NODES")); err == nil && n > 0 {
		nodes = n
	}
	bin, err := BuildBinary(t.TempDir())
	if err != nil {
		t.Fatalf("build driftline: %v", err)
	}
	out := os.Getenv("CHAOS_OUT")
	if out == "" {
		out = t.TempDir()
	}
	seed := EnvSeed()
	t.Logf("seed %d (replay: make soak SEED=%d DURATION=%v)", seed, seed, dur)
	res := Run(t, bin, Options{Seed: seed, Nodes: nodes, Clients: 6, Duration: dur, OutDir: out})
	t.Log(res.Summary())
	for _, f := range res.Findings {
		t.Errorf("seed %d: %s", seed, f)
	}
	if t.Failed() {
		t.Logf("FAILED with seed %d: replay with make soak SEED=%d DURATION=%v", seed, seed, dur)
	}
}
