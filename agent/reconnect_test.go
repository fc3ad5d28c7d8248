package agent_test

import (
	"strings"
	"testing"
	"time"

	"github.com/driftline/driftline/agent"
	"github.com/driftline/driftline/agent/agenttest"
	"github.com/driftline/driftline/agent/config"
	"github.com/driftline/driftline/internal/freeport"
	"github.com/driftline/driftline/internal/testhelp"
	"github.com/driftline/driftline/shared/artifact"
	"github.com/driftline/driftline/shared/wire"
)

// TestPullSurvivesReconnect takes the broker away in the middle of a pull. The agent asks
// again for what was in flight once it is back, never for a chunk it had already verified, and
// the version activates.
func TestPullSurvivesReconnect(t *testing.T) {
	const id = "dev-recon"
	b1 := startBroker(t, freeport.Port(t)) // restarted on its port below
	h1 := newFakeHub(t, b1, id)
	cfg := agenttest.Config(t, id, "any", []string{b1.url()}, []string{h1.publicKey()})
	cfg.Fetch.Requests, cfg.Fetch.Digests = 1, 2
	cfg.Fetch.Timeout = config.Duration(3 * time.Second)
	a := agenttest.Start(t, cfg, agent.Options{})
	testhelp.WaitFor(t, 10*time.Second, "connected", a.Connected)

	m := h1.addModel(agenttest.RandomBytes(12, 2<<20))
	chunks := map[string]bool{}
	for _, c := range m.manifest.Chunks {
		chunks[c.Digest] = true
	}
	h1.mu.Lock()
	h1.delay = 20 * time.Millisecond
	h1.mu.Unlock()
	h1.desire(h1.entry("m", 1, m))
	testhelp.WaitFor(t, 20*time.Second, "a few chunks", func() bool { return agenttest.Metric(t, a.Reg, agent.MetricFetchedChunks) >= 6 })
	b1.stop()
	testhelp.WaitFor(t, 10*time.Second, "disconnect noticed", func() bool { return !a.Connected() })
	verified := int(agenttest.Metric(t, a.Reg, agent.MetricFetchedChunks))
	if verified >= len(chunks) {
		t.Fatalf("pull finished before the outage (%d chunks)", verified)
	}

	b2 := startBroker(t, b1.port)
	h2 := h1.successor(b2)
	latest := h2.watchReported()
	h2.desire(h2.entry("m", 1, m)) // the new broker has no retained message: the hub publishes again
	testhelp.WaitFor(t, 30*time.Second, "active after the reconnect", func() bool {
		r, ok := latest().Models["m"]
		return ok && r.State == wire.StateActive
	})
	if got := agenttest.FileDigest(t, agenttest.ModelFile(cfg.ModelDir, "m")); got != m.manifest.Digest {
		t.Fatalf("current %s", got)
	}
	asked := h2.requested()
	for d := range asked {
		if !chunks[d] {
			t.Fatalf("asked the new broker for %s, not a chunk", d)
		}
	}
	if len(asked)+verified != len(chunks) {
		t.Fatalf("%d chunks verified before the outage, %d asked after, of %d: a verified chunk was fetched again or one was skipped", verified, len(asked), len(chunks))
	}
	t.Logf("%d chunks before the outage, %d after", verified, len(asked))
}

// TestTransientFailureRetried: a pull that stalls (the hub never answers one chunk) is reported
// failed, then tried again after fetch.retry without a new desired revision, and activates once
// the hub answers. A refused signature is not retried.
func TestTransientFailureRetried(t *testing.T) {
	const id = "dev-retry"
	b := startBroker(t, 0)
	h := newFakeHub(t, b, id)
	latest := h.watchReported()
	cfg := agenttest.Config(t, id, "any", []string{b.url()}, []string{h.publicKey()})
	cfg.Fetch.Timeout = config.Duration(200 * time.Millisecond)
	cfg.Fetch.Attempts = 2
	cfg.Fetch.Retry = config.Duration(300 * time.Millisecond)
	a := agenttest.Start(t, cfg, agent.Options{})
	testhelp.WaitFor(t, 10*time.Second, "connected", a.Connected)

	m := h.addModel(agenttest.RandomBytes(13, 300<<10))
	silent := m.manifest.Chunks[1].Digest
	h.mu.Lock()
	h.tamper = func(_, d string) ([][]byte, bool) { return nil, d == silent } // no answer at all
	h.mu.Unlock()
	h.desire(h.entry("m", 1, m))
	testhelp.WaitFor(t, 10*time.Second, "failed for too many attempts", func() bool {
		r, ok := latest().Models["m"]
		return ok && r.State == wire.StateFailed && strings.Contains(r.LastError, "attempts")
	})
	h.mu.Lock()
	h.tamper = nil
	h.mu.Unlock()
	testhelp.WaitFor(t, 10*time.Second, "active after the retry", func() bool {
		r, ok := latest().Models["m"]
		return ok && r.State == wire.StateActive
	})

	// A refused signature is final for the revision: no request after the refusal.
	e := h.entry("n", 1, h.addModel(agenttest.RandomBytes(14, 10<<10))) // its manifest is fetched, then refused
	e.ApprovalSignature = artifact.Signature{}
	h.desire(h.entry("m", 1, m), e)
	testhelp.WaitFor(t, 10*time.Second, "n refused", func() bool {
		r, ok := latest().Models["n"]
		return ok && r.State == wire.StateFailed
	})
	h.mu.Lock()
	nreq := len(h.requests)
	h.mu.Unlock()
	time.Sleep(4 * time.Duration(cfg.Fetch.Retry))
	h.mu.Lock()
	after := len(h.requests)
	h.mu.Unlock()
	if after != nreq {
		t.Fatalf("%d fetch requests after a final refusal", after-nreq)
	}
}
