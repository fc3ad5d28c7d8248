package agent_test

// The agent against a hub that answers chunk requests slowly, out of order or not at all (issue
// 16, "The agent under faults"): the pull finishes or fails with a clear reason, never hangs,
// and never activates a partial file. The test plays the hub (fakehub_test.go).

import (
	"errors"
	"io/fs"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/driftline/driftline/agent"
	"github.com/driftline/driftline/agent/agenttest"
	"github.com/driftline/driftline/agent/config"
	"github.com/driftline/driftline/internal/testhelp"
	"github.com/driftline/driftline/shared/wire"
)

// TestPullFromBadHub pulls a 1 MiB model from a hub that answers chunk requests badly.
//   - slowly: each frame 600 ms late, so every request outlives its 1 s timeout (2 s for a
//     first request, which names the shared topic: a hub may hold those back to gather a wave)
//     and is asked again; the late duplicate answers are dropped, each chunk verified and
//     stored once;
//   - out of order: each request's digests answered last first, each object's frames too;
//   - not at all: the pull fails within its stall timeout (3 s here) with a reason naming the
//     stall, no partial file becomes current, and once the hub answers again the agent tries
//     again by itself (fetch.retry) and activates the model.
func TestPullFromBadHub(t *testing.T) {
	setup := func(t *testing.T, id string) (*fakeHub, func() wire.Reported, *agenttest.Agent, config.Config) {
		b := startBroker(t, 0)
		h := newFakeHub(t, b, id)
		latest := h.watchReported()
		cfg := agenttest.Config(t, id, "any", []string{b.url()}, []string{h.publicKey()})
		cfg.Fetch.Timeout = config.Duration(time.Second)
		cfg.Fetch.Stall = config.Duration(3 * time.Second)
		cfg.Fetch.Retry = config.Duration(time.Second)
		cfg.Fetch.Digests = 4
		a := agenttest.Start(t, cfg, agent.Options{})
		testhelp.WaitFor(t, 10*time.Second, "connected", a.Connected)
		return h, latest, a, cfg
	}
	active := func(t *testing.T, latest func() wire.Reported, name string, v int) {
		t.Helper()
		testhelp.WaitFor(t, 30*time.Second, name+" active", func() bool {
			m, ok := latest().Models[name]
			return ok && m.State == wire.StateActive && m.Active != nil && *m.Active == v
		})
	}
	data := agenttest.RandomBytes(51, 1<<20)
	want := agenttest.DistinctChunks(t, data)

	t.Run("slow", func(t *testing.T) {
		h, latest, a, cfg := setup(t, "dev-slow")
		m := h.addModel(data)
		h.mu.Lock()
		h.delay = 600 * time.Millisecond
		h.mu.Unlock()
		start := time.Now()
		h.desire(h.entry("slow", 1, m))
		active(t, latest, "slow", 1)
		if got, d := agenttest.FileDigest(t, agenttest.ModelFile(cfg.ModelDir, "slow")), m.manifest.Digest; got != d {
			t.Fatalf("current %s, artifact %s", got, d)
		}
		asked := 0
		for d, n := range h.requested() {
			if d != m.manifestDigest {
				asked += n
			}
		}
		fetched := agenttest.Metric(t, a.Reg, agent.MetricFetchedChunks)
		t.Logf("slow hub: active after %v; %d chunk digests asked for %d chunks; %v verified and stored", time.Since(start).Round(time.Millisecond), asked, want, fetched)
		if asked <= want {
			t.Fatalf("%d digests asked for %d chunks: no request outlived its timeout, the test did not exercise late answers", asked, want)
		}
		if fetched != float64(want) {
			t.Fatalf("%v chunks verified and stored for %d distinct chunks: a late duplicate answer was stored again", fetched, want)
		}
	})

	t.Run("out of order", func(t *testing.T) {
		h, latest, a, cfg := setup(t, "dev-order")
		m := h.addModel(data)
		h.mu.Lock()
		h.reverse = true
		h.mu.Unlock()
		h.desire(h.entry("order", 1, m))
		active(t, latest, "order", 1)
		if got, d := agenttest.FileDigest(t, agenttest.ModelFile(cfg.ModelDir, "order")), m.manifest.Digest; got != d {
			t.Fatalf("current %s, artifact %s", got, d)
		}
		if fetched := agenttest.Metric(t, a.Reg, agent.MetricFetchedChunks); fetched != float64(want) {
			t.Fatalf("%v chunks verified and stored for %d distinct chunks", fetched, want)
		}
	})

	t.Run("not at all", func(t *testing.T) {
		h, latest, a, cfg := setup(t, "dev-silent")
		m := h.addModel(data)
		chunks := map[string]bool{}
		for _, c := range m.manifest.Chunks {
			chunks[c.Digest] = true
		}
		var answered atomic.Int64
		h.mu.Lock()
		h.tamper = func(_, d string) ([][]byte, bool) {
			// The first two chunks are answered, then nothing: a hub that stops mid-pull.
			if chunks[d] && answered.Add(1) > 2 {
				return nil, true
			}
			return nil, false
		}
		h.mu.Unlock()
		start := time.Now()
		h.desire(h.entry("silent", 1, m))
		var failed wire.ReportedModel
		testhelp.WaitFor(t, 20*time.Second, "silent failed", func() bool {
			r, ok := latest().Models["silent"]
			failed = r
			return ok && r.State == wire.StateFailed
		})
		took := time.Since(start)
		t.Logf("silent hub: failed after %v: %s", took.Round(time.Millisecond), failed.LastError)
		if !strings.Contains(failed.LastError, "stalled") {
			t.Fatalf("failure reason %q does not name the stall", failed.LastError)
		}
		if took > cfg.Fetch.Stall.D()+5*time.Second {
			t.Fatalf("the pull took %v to fail, stall timeout %v", took, cfg.Fetch.Stall.D())
		}
		if failed.Active != nil {
			t.Fatalf("a version (%d) is active after a failed first pull", *failed.Active)
		}
		if _, err := os.Stat(agenttest.ModelFile(cfg.ModelDir, "silent")); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("current model file after a failed pull: %v", err)
		}
		if n := agenttest.Metric(t, a.Reg, agent.MetricActivations, "result", agent.ResultActive); n != 0 {
			t.Fatalf("%v activations after a failed pull", n)
		}
		// The hub answers again: the agent tries again without a new desired state.
		h.mu.Lock()
		h.tamper = nil
		h.mu.Unlock()
		active(t, latest, "silent", 1)
		if got, d := agenttest.FileDigest(t, agenttest.ModelFile(cfg.ModelDir, "silent")), m.manifest.Digest; got != d {
			t.Fatalf("current %s, artifact %s", got, d)
		}
		t.Logf("silent hub: active %v after the hub answered again", time.Since(start).Round(time.Millisecond))
	})
}
