package agent_test

import (
	"strings"
	"testing"
	"time"

	"github.com/driftline/driftline/agent"
	"github.com/driftline/driftline/agent/agenttest"
	"github.com/driftline/driftline/internal/testhelp"
	"github.com/driftline/driftline/shared/wire"
)

// TestRevokedVersionRefused: once a valid desired state told the agent that m@1 was withdrawn,
// a later desired state naming m@1 again, validly signed with a valid approval (what a stolen
// online key, or a node signing from stale state, could produce), is refused; m@2 keeps
// running.
func TestRevokedVersionRefused(t *testing.T) {
	b := startBroker(t, 0)
	h := newFakeHub(t, b, "dev-rv")
	latest := h.watchReported()
	cfg := agenttest.Config(t, "dev-rv", "any", []string{b.url()}, []string{h.publicKey()})
	a := agenttest.Start(t, cfg, agent.Options{})
	testhelp.WaitFor(t, 10*time.Second, "connected", a.Connected)
	v1, v2 := h.addModel(agenttest.RandomBytes(51, 40<<10)), h.addModel(agenttest.RandomBytes(52, 40<<10))
	state := func(st wire.State, version int) func() bool {
		return func() bool {
			m, ok := latest().Models["m"]
			return ok && m.State == st && m.Active != nil && *m.Active == version
		}
	}
	h.desire(h.entry("m", 1, v1))
	testhelp.WaitFor(t, 15*time.Second, "m@1 active", state(wire.StateActive, 1))
	h.desireRevoking([]string{"m@1"}, h.entry("m", 2, v2))
	testhelp.WaitFor(t, 15*time.Second, "m@2 active", state(wire.StateActive, 2))

	before := agenttest.Metric(t, a.Reg, agent.MetricRejected, "reason", agent.ReasonRevoked)
	h.desire(h.entry("m", 1, v1)) // no revocation list this time
	testhelp.WaitFor(t, 15*time.Second, "m@1 refused as revoked", func() bool {
		m := latest().Models["m"]
		return m.State == wire.StateFailed && strings.Contains(m.LastError, "revoked") && m.Active != nil && *m.Active == 2
	})
	if got := agenttest.Metric(t, a.Reg, agent.MetricRejected, "reason", agent.ReasonRevoked); got != before+1 {
		t.Fatalf("rejected{reason=revoked} = %v, want %v", got, before+1)
	}
	if got := agenttest.FileDigest(t, agenttest.ModelFile(cfg.ModelDir, "m")); got != v2.manifest.Digest {
		t.Fatalf("current is %s, want m@2's %s", got, v2.manifest.Digest)
	}
}
