package agent_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"testing"
	"time"

	"github.com/driftline/driftline/agent"
	"github.com/driftline/driftline/agent/agenttest"
	"github.com/driftline/driftline/internal/testhelp"
	"github.com/driftline/driftline/shared/trust"
	"github.com/driftline/driftline/shared/wire"
)

// withRoots returns the signed desired payload b carrying roots (outside the signature, as the
// hub sends them).
func withRoots(t *testing.T, b []byte, roots ...[]byte) []byte {
	t.Helper()
	d, err := wire.DecodeDesired(b)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range roots {
		d.Roots = append(d.Roots, json.RawMessage(r))
	}
	out, err := wire.Encode(d)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestExpiredRoot: the agent checks its root of trust's own expiry as TUF does. A desired state,
// validly signed, that brings the agent to a root which has expired is refused
// (rejected{reason="root_expired"}); the agent keeps that root (it chained to it: no going
// back), keeps running the model it has, and says so in /metrics, GET /status and its reported
// state. A later desired state carrying a renewed root, chaining from the expired one, applies.
func TestExpiredRoot(t *testing.T) {
	b := startBroker(t, 0)
	h := newFakeHub(t, b, "dev-re")
	latest := h.watchReported()
	_, rootKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	online := []ed25519.PublicKey{h.key.Public().(ed25519.PublicKey)}
	now := time.Now()
	r1, err := trust.New(rootKey, online, now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	r2, err := trust.Next(r1, rootKey, online, now.Add(-time.Minute)) // issued already expired
	if err != nil {
		t.Fatal(err)
	}
	r3, err := trust.Next(r2, rootKey, online, now.Add(time.Hour)) // the renewal
	if err != nil {
		t.Fatal(err)
	}
	cfg := agenttest.Config(t, "dev-re", "any", []string{b.url()}, nil)
	cfg.TrustedRoot = string(r1)
	a := agenttest.Start(t, cfg, agent.Options{})
	testhelp.WaitFor(t, 10*time.Second, "connected", a.Connected)
	v1, v2 := h.addModel(agenttest.RandomBytes(61, 20<<10)), h.addModel(agenttest.RandomBytes(62, 20<<10))
	active := func(version int) func() bool {
		return func() bool {
			m, ok := latest().Models["m"]
			return ok && m.State == wire.StateActive && m.Active != nil && *m.Active == version
		}
	}
	h.desire(h.entry("m", 1, v1))
	testhelp.WaitFor(t, 15*time.Second, "m@1 active", active(1))
	if a.Status().RootExpired || agenttest.Metric(t, a.Reg, agent.MetricTrustRootExpired) != 0 {
		t.Fatal("root version 1 reported expired")
	}

	refused := func() float64 {
		return agenttest.Metric(t, a.Reg, agent.MetricRejected, "reason", agent.ReasonRootExpired)
	}
	p := withRoots(t, h.signedDesired(h.rev.Add(1), time.Hour, h.entry("m", 2, v2)), r2)
	h.publish(h.topics.Desired(h.id), p, true)
	testhelp.WaitFor(t, 10*time.Second, "the desired state under an expired root refused", func() bool { return refused() >= 1 })
	if v := agenttest.Metric(t, a.Reg, agent.MetricTrustRoot); v != 2 {
		t.Fatalf("root version %v, want 2 (the expired root is kept: it chained)", v)
	}
	if v := agenttest.Metric(t, a.Reg, agent.MetricTrustRootExpired); v != 1 {
		t.Fatalf("%s = %v, want 1", agent.MetricTrustRootExpired, v)
	}
	if st := a.Status(); !st.RootExpired || st.RootVersion != 2 || st.RootExpires.IsZero() {
		t.Fatalf("status %+v, want root version 2 expired", st)
	}
	testhelp.WaitFor(t, 10*time.Second, "reported root_expired", func() bool { return latest().RootExpired })
	if !active(1)() {
		t.Fatalf("m is %+v, want m@1 still active", latest().Models["m"])
	}

	p = withRoots(t, h.signedDesired(h.rev.Add(1), time.Hour, h.entry("m", 2, v2)), r2, r3)
	h.publish(h.topics.Desired(h.id), p, true)
	testhelp.WaitFor(t, 15*time.Second, "m@2 active under the renewed root", active(2))
	testhelp.WaitFor(t, 10*time.Second, "reported root_expired cleared", func() bool { return !latest().RootExpired })
	if v := agenttest.Metric(t, a.Reg, agent.MetricTrustRoot); v != 3 {
		t.Fatalf("root version %v, want 3", v)
	}
	if a.Status().RootExpired || agenttest.Metric(t, a.Reg, agent.MetricTrustRootExpired) != 0 {
		t.Fatal("renewed root still reported expired")
	}
}
