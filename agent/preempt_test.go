package agent_test

import (
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/driftline/driftline/agent"
	"github.com/driftline/driftline/agent/agenttest"
	"github.com/driftline/driftline/agent/config"
	"github.com/driftline/driftline/internal/testhelp"
	"github.com/driftline/driftline/shared/wire"
)

// TestPreemptedPullSeedsNext: a newer desired revision preempts a download; the chunks it had
// fetched stay in its partial download, and the next pull, of a version sharing most of its
// content, takes them from there instead of fetching them again. The preempted partial is then
// removed. A download preempted by a revision that asks for the version already running leaves
// no partial behind either.
func TestPreemptedPullSeedsNext(t *testing.T) {
	b := startBroker(t, 0)
	h := newFakeHub(t, b, "dev-pre")
	latest := h.watchReported()
	cfg := agenttest.Config(t, "dev-pre", "any", []string{b.url()}, []string{h.publicKey()})
	const window = 2
	cfg.Fetch.Requests, cfg.Fetch.Digests = 1, window // a small window: the preemption lands mid-pull
	v2data := agenttest.RandomBytes(21, 2<<20)
	v2, v3 := h.addModel(v2data), h.addModel(agenttest.Mutate(v2data, 0.05, 3))
	h.mu.Lock()
	h.delay = 5 * time.Millisecond
	h.mu.Unlock()

	const preemptAt = 8
	var chunks, at atomic.Int64
	at.Store(preemptAt)
	preempt := make(chan struct{}, 2)
	a := agenttest.Start(t, cfg, agent.Options{OnChunk: func() {
		if chunks.Add(1) == at.Load() {
			preempt <- struct{}{}
		}
	}})
	testhelp.WaitFor(t, 10*time.Second, "connected", a.Connected)
	h.desire(h.entry("m", 2, v2))
	select {
	case <-preempt:
	case <-time.After(30 * time.Second):
		t.Fatal("v2's download did not start")
	}
	h.desire(h.entry("m", 3, v3))
	waitRunning(t, latest, cfg.ModelDir, 3, v3)
	// A chunk v2's download had verified is not asked for again; only those in flight when it
	// was preempted may be.
	requested := h.requested()
	var again []string
	for d := range uniqueDigests(v3.manifest) {
		if requested[d] > 1 {
			again = append(again, d)
		}
	}
	if len(again) > window {
		t.Fatalf("%d chunks of v3 were fetched again after the preemption (window %d): %v", len(again), window, again)
	}
	if reused := agenttest.Metric(t, a.Reg, agent.MetricChunksReused); reused < preemptAt/2 {
		t.Fatalf("v3 reused %v chunks, want most of the %d v2 had", reused, preemptAt)
	}
	if _, err := os.Stat(filepath.Join(cfg.ModelDir, "m", ".partial-2")); !os.IsNotExist(err) {
		t.Fatalf("v2's partial download is still on disk: %v", err)
	}

	// v4 is preempted by a revision that asks for v3 again, which runs already.
	at.Store(chunks.Load() + preemptAt)
	h.desire(h.entry("m", 4, h.addModel(agenttest.RandomBytes(22, 2<<20))))
	select {
	case <-preempt:
	case <-time.After(30 * time.Second):
		t.Fatal("v4's download did not start")
	}
	rev := h.desire(h.entry("m", 3, v3))
	testhelp.WaitFor(t, 30*time.Second, "v3 reported active again", func() bool {
		r := latest()
		m, ok := r.Models["m"]
		return r.Rev == rev && ok && m.State == wire.StateActive && m.Active != nil && *m.Active == 3
	})
	noPartials(t, filepath.Join(cfg.ModelDir, "m"))
}

// TestFailedPullSeedsNext: a pull that failed for a reason that may pass (here a stall: the hub
// stopped answering) keeps its partial download and the manifest that places its chunks, so a
// later pull of another version sharing its content takes them from there.
func TestFailedPullSeedsNext(t *testing.T) {
	b := startBroker(t, 0)
	h := newFakeHub(t, b, "dev-stall")
	latest := h.watchReported()
	cfg := agenttest.Config(t, "dev-stall", "any", []string{b.url()}, []string{h.publicKey()})
	const window = 2
	cfg.Fetch.Requests, cfg.Fetch.Digests = 1, window
	cfg.Fetch.Timeout = config.Duration(200 * time.Millisecond)
	cfg.Fetch.Stall = config.Duration(time.Second)
	cfg.Fetch.Attempts = 100
	cfg.Fetch.Retry = config.Duration(time.Hour) // no retry of v2 within the test
	v2data := agenttest.RandomBytes(41, 2<<20)
	v2, v3 := h.addModel(v2data), h.addModel(agenttest.Mutate(v2data, 0.05, 3))

	// The hub answers the manifest and 8 chunks, then nothing.
	var served atomic.Int64
	h.mu.Lock()
	h.tamper = func(_, d string) ([][]byte, bool) {
		if d == v2.manifestDigest {
			return nil, false
		}
		return nil, served.Add(1) > 8
	}
	h.mu.Unlock()
	a := agenttest.Start(t, cfg, agent.Options{})
	testhelp.WaitFor(t, 10*time.Second, "connected", a.Connected)
	h.desire(h.entry("m", 2, v2))
	testhelp.WaitFor(t, 30*time.Second, "v2 failed (stalled)", func() bool {
		m, ok := latest().Models["m"]
		return ok && m.State == wire.StateFailed
	})
	if _, err := os.Stat(filepath.Join(cfg.ModelDir, "m", ".partial-2")); err != nil {
		t.Fatalf("the stalled pull's partial download is gone: %v", err)
	}

	h.mu.Lock()
	h.tamper = nil
	h.mu.Unlock()
	h.desire(h.entry("m", 3, v3))
	waitRunning(t, latest, cfg.ModelDir, 3, v3)
	if reused := agenttest.Metric(t, a.Reg, agent.MetricChunksReused); reused < 6 {
		t.Fatalf("v3 reused %v chunks, want most of the 8 the stalled v2 had", reused)
	}
	noPartials(t, filepath.Join(cfg.ModelDir, "m"))
}

// waitRunning waits until the device reports model "m" active at version v, and checks that
// current holds m's file.
func waitRunning(t *testing.T, latest func() wire.Reported, modelDir string, v int, m model) {
	t.Helper()
	testhelp.WaitFor(t, 30*time.Second, fmt.Sprint("v", v, " active"), func() bool {
		r, ok := latest().Models["m"]
		return ok && r.State == wire.StateActive && r.Active != nil && *r.Active == v
	})
	if got := agenttest.FileDigest(t, agenttest.ModelFile(modelDir, "m")); got != m.manifest.Digest {
		t.Fatalf("current holds %s, want v%d", got, v)
	}
}
