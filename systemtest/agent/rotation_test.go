package agent_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/driftline/driftline/agent"
	"github.com/driftline/driftline/agent/agenttest"
	"github.com/driftline/driftline/hub/api"
	"github.com/driftline/driftline/hub/keys"
	"github.com/driftline/driftline/hub/node"
	"github.com/driftline/driftline/hub/node/nodetest"
	"github.com/driftline/driftline/hub/state"
	"github.com/driftline/driftline/internal/testhelp"
	"github.com/driftline/driftline/shared/artifact"
	"github.com/driftline/driftline/shared/trust"
	"github.com/driftline/driftline/shared/wire"
)

// TestKeyRotationOnline rotates the hub's online key while an agent enrolled with root version
// 1 runs: the agent learns root version 2 from its desired state (signed by the root key it
// trusts) and activates a version approved with the new key; once the old key is retired
// (root version 3) a desired state signed by the old key is refused, while the hub's next
// real one still applies.
func TestKeyRotationOnline(t *testing.T) {
	ob := startOpenBroker(t)
	h := nodetest.Start(t, nodetest.Brokers(ob.hubURL()))
	tok := enroll(h, "dev-r")
	ob.allow(map[string]string{"dev-r": tok})
	cfg := agenttest.Config(t, "dev-r", tok, []string{ob.mq.URL()}, nil)
	cfg.TrustedRoot = h.Root()
	a := agenttest.Start(t, cfg, agent.Options{})
	testhelp.WaitFor(t, 20*time.Second, "agent connected", a.Connected)
	rootVersion := func() float64 { return agenttest.Metric(t, a.Reg, agent.MetricTrustRoot) }

	v1, _ := h.PushModel("rm", agenttest.RandomBytes(41, 32<<10), "", true)
	assign(h, "dev-r", "rm", v1)
	waitActive(t, h, "dev-r", "rm", v1, "active")
	if v := rootVersion(); v != 1 {
		t.Fatalf("agent holds root version %v, want 1", v)
	}
	before, err := h.Reader().Trust()
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
	h.Call(http.MethodPost, "/api/v1/keys/rotate", nil, http.StatusOK, &page)
	if page.RootVersion != 2 || len(page.Items) != 2 || page.Items[0].Signer == (page.Items[0].KeyID == before.Signer) {
		t.Fatalf("after rotate: %+v", page)
	}
	testhelp.WaitFor(t, 20*time.Second, "agent to learn root version 2", func() bool { return rootVersion() == 2 })
	v2, _ := h.PushModel("rm", agenttest.RandomBytes(42, 32<<10), "", true) // approved with the new key
	assign(h, "dev-r", "rm", v2)
	waitActive(t, h, "dev-r", "rm", v2, "active")

	// The signer cannot be retired; the old key can.
	var cur string
	for _, k := range page.Items {
		if k.Signer {
			cur = k.KeyID
		}
	}
	h.Call(http.MethodPost, "/api/v1/keys/"+cur+"/retire", nil, http.StatusConflict, nil)
	h.Call(http.MethodPost, "/api/v1/keys/"+before.Signer+"/retire", nil, http.StatusOK, &page)
	if page.RootVersion != 3 {
		t.Fatalf("after retire: %+v", page)
	}
	testhelp.WaitFor(t, 20*time.Second, "agent to learn root version 3", func() bool { return rootVersion() == 3 })
	if tr, _ := h.Reader().Trust(); len(tr.Keys) != 2 || tr.Keys[0].Status != state.KeyRetired || tr.Keys[0].Private != nil {
		t.Fatalf("trust after retire: %+v", tr.Public())
	}

	// Mallory holds the retired key: what it signs is refused from now on.
	forged := wire.Desired{Header: wire.Header{DeviceID: "dev-r", TS: time.Now().UnixMilli()}, Rev: 1 << 40, Models: []wire.DesiredModel{},
		IssuedAt: time.Now().UnixMilli(), Expires: time.Now().Add(time.Hour).UnixMilli()}
	forged.Sign(ed25519.PrivateKey(oldKey))
	p, _ := wire.Encode(forged)
	refused := agenttest.Metric(t, a.Reg, agent.MetricRejected, "reason", agent.ReasonUnknownKey)
	ob.publish(wire.Default().Desired("dev-r"), p)
	testhelp.WaitFor(t, 10*time.Second, "the retired key's desired refused", func() bool {
		return agenttest.Metric(t, a.Reg, agent.MetricRejected, "reason", agent.ReasonUnknownKey) > refused
	})
	if got, err := a.ActiveModels(); err != nil || len(got) != 1 || got[0].Version != v2 {
		t.Fatalf("active models %+v (%v), want rm@%d", got, err, v2)
	}
	v3, _ := h.PushModel("rm", agenttest.RandomBytes(43, 32<<10), "", true)
	assign(h, "dev-r", "rm", v3)
	waitActive(t, h, "dev-r", "rm", v3, "active")
}

// TestRootKeyRotationOnline replaces the cluster's root key while an agent enrolled with root
// version 1 runs: root version 2 names the new root key and is signed by the old and the new
// one (TUF's rule), posted to POST /api/v1/keys/root as `driftline key rotate-root` does. The
// agent chains to it; an online-key rotation then signed offline with the new root key (root
// version 3) reaches it, and a version approved with that online key activates. The leader,
// which still holds the old root key, can no longer sign a root version.
func TestRootKeyRotationOnline(t *testing.T) {
	h := nodetest.Start(t)
	tok := enroll(h, "dev-rk")
	cfg := agenttest.Config(t, "dev-rk", tok, []string{h.MQTTURL()}, nil)
	cfg.TrustedRoot = h.Root()
	a := agenttest.Start(t, cfg, agent.Options{})
	testhelp.WaitFor(t, 20*time.Second, "agent connected", a.Connected)
	rootVersion := func() float64 { return agenttest.Metric(t, a.Reg, agent.MetricTrustRoot) }
	v1, _ := h.PushModel("rk", agenttest.RandomBytes(71, 16<<10), "", true)
	assign(h, "dev-rk", "rk", v1)
	waitActive(t, h, "dev-rk", "rk", v1, "active")

	oldRoot, err := artifact.LoadKey(filepath.Join(h.Dir, node.RootKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	_, newRoot, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := trust.NextRootKey([]byte(h.Root()), oldRoot, newRoot, time.Now().Add(keys.RootLifetime))
	if err != nil {
		t.Fatal(err)
	}
	var page struct {
		Items []struct {
			PublicKey string `json:"public_key"`
			Status    string `json:"status"`
		} `json:"items"`
		RootVersion int64 `json:"root_version"`
	}
	// A root key swap signed by the new key alone does not chain: refused.
	alone, err := trust.NextRootKey([]byte(h.Root()), oldRoot, newRoot, time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	alone = stripSignature(t, alone, oldRoot)
	h.Call(http.MethodPost, "/api/v1/keys/root", api.SignedRootRequest{Root: alone}, http.StatusBadRequest, nil)

	h.Call(http.MethodPost, "/api/v1/keys/root", api.SignedRootRequest{Root: r2}, http.StatusOK, &page)
	if page.RootVersion != 2 {
		t.Fatalf("after rotate-root: %+v", page)
	}
	testhelp.WaitFor(t, 20*time.Second, "agent to learn root version 2", func() bool { return rootVersion() == 2 })
	// The leader's own root key (DATA/root.key) is the old one: it cannot sign any more.
	h.Call(http.MethodPost, "/api/v1/keys/rotate", nil, http.StatusConflict, nil)

	// An online-key rotation signed offline with the new root key.
	var online []ed25519.PublicKey
	for _, k := range page.Items {
		if k.Status == state.KeyActive {
			p, err := artifact.ParsePublicKey([]byte(k.PublicKey))
			if err != nil {
				t.Fatal(err)
			}
			online = append(online, p)
		}
	}
	_, next, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	r3, err := trust.Next(r2, newRoot, append(online, next.Public().(ed25519.PublicKey)), time.Now().Add(keys.RootLifetime))
	if err != nil {
		t.Fatal(err)
	}
	h.Call(http.MethodPost, "/api/v1/keys/rotate", api.SignedRootRequest{Root: r3, PrivateKey: base64.StdEncoding.EncodeToString(next)}, http.StatusOK, &page)
	if page.RootVersion != 3 {
		t.Fatalf("after the offline rotate: %+v", page)
	}
	testhelp.WaitFor(t, 20*time.Second, "agent to learn root version 3", func() bool { return rootVersion() == 3 })
	v2, _ := h.PushModel("rk", agenttest.RandomBytes(72, 16<<10), "", true) // approved with the new online key
	assign(h, "dev-rk", "rk", v2)
	waitActive(t, h, "dev-rk", "rk", v2, "active")

	// Restarted with the same config (trusted_root: version 1, another root key), the agent
	// resumes from root version 3, which it re-verifies from version 1 through the chain it
	// kept, before it hears anything from the hub (no broker here).
	a.Stop()
	cfg.Brokers = []string{"tcp://127.0.0.1:1"}
	b := agenttest.Start(t, cfg, agent.Options{})
	if v := agenttest.Metric(t, b.Reg, agent.MetricTrustRoot); v != 3 {
		t.Fatalf("after a restart the agent holds root version %v, want 3", v)
	}
}

// stripSignature removes key's signature from a signed root document.
func stripSignature(t *testing.T, root []byte, key ed25519.PrivateKey) []byte {
	t.Helper()
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(root, &doc); err != nil {
		t.Fatal(err)
	}
	var sigs []struct {
		KeyID string `json:"keyid"`
		Sig   string `json:"sig"`
	}
	if err := json.Unmarshal(doc["signatures"], &sigs); err != nil {
		t.Fatal(err)
	}
	pk := key.Public().(ed25519.PublicKey)
	var keep []any
	for _, s := range sigs {
		raw, _ := hex.DecodeString(s.Sig)
		if !ed25519.Verify(pk, []byte(doc["signed"]), raw) {
			keep = append(keep, s)
		}
	}
	if len(keep) != len(sigs)-1 {
		t.Fatalf("root has %d signatures, %d not by the key", len(sigs), len(keep))
	}
	doc["signatures"], _ = json.Marshal(keep)
	b, _ := json.Marshal(doc)
	return b
}
