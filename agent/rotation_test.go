package agent_test

import (
	"crypto/ed25519"
	"net/http"
	"testing"
	"time"

	"github.com/driftline/driftline/agent"
	"github.com/driftline/driftline/hub/state"
	"github.com/driftline/driftline/shared/wire"
)

// TestKeyRotationOnline rotates the hub's online key while an agent enrolled with root version
// 1 runs: the agent learns root version 2 from its desired state (signed by the root key it
// trusts) and activates a version approved with the new key; once the old key is retired
// (root version 3) a desired state signed by the old key is refused, while the hub's next
// real one still applies.
func TestKeyRotationOnline(t *testing.T) {
	ob := startOpenBroker(t)
	h := startHub(t, ob.hubURL())
	tok := h.enroll("dev-r")
	ob.allow(map[string]string{"dev-r": tok})
	cfg := agentConfig(t, "dev-r", tok, []string{ob.mq.URL()}, nil)
	cfg.TrustedRoot = h.root()
	a := startAgent(t, cfg, agent.Options{})
	waitFor(t, 20*time.Second, "agent connected", a.Connected)
	rootVersion := func() float64 { return metric(t, a.reg, agent.MetricTrustRoot) }

	v1, _ := h.pushModel("rm", randomBytes(41, 32<<10))
	h.assign("dev-r", "rm", v1)
	waitActive(t, h, "dev-r", "rm", v1, "active")
	if v := rootVersion(); v != 1 {
		t.Fatalf("agent holds root version %v, want 1", v)
	}
	before, err := h.n.Reader().Trust()
	if err != nil {
		t.Fatal(err)
	}
	oldKey, err := before.SignerKey()
	if err != nil {
		t.Fatal(err)
	}

	var page struct {
		Items []struct {
			KeyID  string `json:"key_id"`
			Signer bool   `json:"signer"`
			Status string `json:"status"`
		} `json:"items"`
		RootVersion int64 `json:"root_version"`
	}
	h.call(http.MethodPost, "/api/v1/keys/rotate", nil, http.StatusOK, &page)
	if page.RootVersion != 2 || len(page.Items) != 2 || page.Items[0].Signer == (page.Items[0].KeyID == before.Signer) {
		t.Fatalf("after rotate: %+v", page)
	}
	waitFor(t, 20*time.Second, "agent to learn root version 2", func() bool { return rootVersion() == 2 })
	v2, _ := h.pushModel("rm", randomBytes(42, 32<<10)) // approved with the new key
	h.assign("dev-r", "rm", v2)
	waitActive(t, h, "dev-r", "rm", v2, "active")

	// The signer cannot be retired; the old key can.
	var cur string
	for _, k := range page.Items {
		if k.Signer {
			cur = k.KeyID
		}
	}
	h.call(http.MethodPost, "/api/v1/keys/"+cur+"/retire", nil, http.StatusConflict, nil)
	h.call(http.MethodPost, "/api/v1/keys/"+before.Signer+"/retire", nil, http.StatusOK, &page)
	if page.RootVersion != 3 {
		t.Fatalf("after retire: %+v", page)
	}
	waitFor(t, 20*time.Second, "agent to learn root version 3", func() bool { return rootVersion() == 3 })
	if tr, _ := h.n.Reader().Trust(); len(tr.Keys) != 2 || tr.Keys[0].Status != state.KeyRetired || tr.Keys[0].Private != nil {
		t.Fatalf("trust after retire: %+v", tr.Public())
	}

	// Mallory holds the retired key: what it signs is refused from now on.
	forged := wire.Desired{Header: wire.Header{DeviceID: "dev-r", TS: time.Now().UnixMilli()}, Rev: 1 << 40, Models: []wire.DesiredModel{},
		IssuedAt: time.Now().UnixMilli(), Expires: time.Now().Add(time.Hour).UnixMilli()}
	forged.Sign(ed25519.PrivateKey(oldKey))
	p, _ := wire.Encode(forged)
	refused := metric(t, a.reg, agent.MetricRejected, "reason", agent.ReasonUnknownKey)
	ob.publish(wire.Default().Desired("dev-r"), p)
	waitFor(t, 10*time.Second, "the retired key's desired refused", func() bool {
		return metric(t, a.reg, agent.MetricRejected, "reason", agent.ReasonUnknownKey) > refused
	})
	if got, err := a.ActiveModels(); err != nil || len(got) != 1 || got[0].Version != v2 {
		t.Fatalf("active models %+v (%v), want rm@%d", got, err, v2)
	}
	v3, _ := h.pushModel("rm", randomBytes(43, 32<<10))
	h.assign("dev-r", "rm", v3)
	waitActive(t, h, "dev-r", "rm", v3, "active")
}
