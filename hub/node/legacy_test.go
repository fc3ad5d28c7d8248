package node

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/driftline/driftline/hub/protocol"
	"github.com/driftline/driftline/internal/testhelp"
	"github.com/driftline/driftline/shared/artifact"
	"github.com/driftline/driftline/shared/wire"
)

// legacyDesired is the desired payload as the previous release's agent decodes it (its
// shared/wire DesiredModel): per model the manifest digest and "signature", the node-key
// signature over the manifest bytes. Unknown fields are ignored, as its decoder does.
type legacyDesired struct {
	Models []struct {
		Name           string             `json:"name"`
		Version        int                `json:"version"`
		ManifestDigest string             `json:"manifest_digest"`
		Signature      artifact.Signature `json:"signature"`
	} `json:"models"`
}

// TestDesiredCarriesLegacySignature checks that a desired state built by this hub still serves
// an agent of the previous release: its "signature" verifies, by the old rule
// (artifact.Verify over the manifest bytes), against the keys such an agent was enrolled with
// (the registered node keys, key/KEYID, which the previous release's `device add` wrote into
// trusted_keys), even after the online key rotated away from the node key; and the approval
// signature, in its own field, verifies against the online keys for agents of this release.
func TestDesiredCarriesLegacySignature(t *testing.T) {
	n, tok := testNode(t)
	nodePub := n.key.Public().(ed25519.PublicKey)
	testhelp.WaitFor(t, 10*time.Second, "the node key registered (key/KEYID)", func() bool {
		have, _ := n.Reader().SigningKeys()
		for _, k := range have {
			if k.KeyID == artifact.KeyID(nodePub) {
				return true
			}
		}
		return false
	})
	// Rotate, so the online key that signs approvals is no longer the node key.
	call(t, n, tok, http.MethodPost, "/api/v1/keys/rotate", nil, http.StatusOK, nil)
	cur, err := n.keys.Current()
	if err != nil {
		t.Fatal(err)
	}
	signer := artifact.KeyID(cur.Key.Public().(ed25519.PublicKey))
	if signer == artifact.KeyID(nodePub) {
		t.Fatalf("after rotation the online signer is still the node key %s", signer)
	}

	call(t, n, tok, http.MethodPost, "/api/v1/models", map[string]string{"name": "m"}, http.StatusCreated, nil)
	data := make([]byte, 64<<10)
	rand.Read(data)
	v, _ := pushModel(t, n, tok, "m", data)
	call(t, n, tok, http.MethodPost, "/api/v1/devices", map[string]any{"id": "d1"}, http.StatusCreated, nil)
	call(t, n, tok, http.MethodPut, "/api/v1/devices/d1/models/m", map[string]int{"version": v}, http.StatusOK, nil)

	dev, err := n.Reader().Device("d1")
	if err != nil {
		t.Fatal(err)
	}
	msg, err := protocol.BuildDesired(n.Reader(), dev, cur, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	payload, err := wire.Encode(msg)
	if err != nil {
		t.Fatal(err)
	}

	// The previous release's agent: trusted_keys are the registered node keys.
	registered, err := n.Reader().SigningKeys()
	if err != nil {
		t.Fatal(err)
	}
	var trusted []ed25519.PublicKey
	for _, k := range registered {
		pk, err := artifact.ParsePublicKey([]byte(k.PublicKey))
		if err != nil {
			t.Fatalf("registered key %s: %v", k.KeyID, err)
		}
		trusted = append(trusted, pk)
	}
	var old legacyDesired
	if err := json.Unmarshal(payload, &old); err != nil {
		t.Fatal(err)
	}
	if len(old.Models) != 1 || old.Models[0].Name != "m" || old.Models[0].Version != v {
		t.Fatalf("desired as an older agent reads it: %s", payload)
	}
	manifest, err := n.Reader().Manifest("m", v)
	if err != nil {
		t.Fatal(err)
	}
	if artifact.DigestOf(manifest) != old.Models[0].ManifestDigest {
		t.Fatalf("manifest digest %s, desired names %s", artifact.DigestOf(manifest), old.Models[0].ManifestDigest)
	}
	if err := artifact.Verify(trusted, manifest, old.Models[0].Signature); err != nil {
		t.Fatalf("an agent of the previous release refuses the desired model's signature: %v\npayload: %s", err, payload)
	}

	// This release's agents verify the approval signature with the online keys.
	got, err := wire.DecodeDesired(payload)
	if err != nil {
		t.Fatal(err)
	}
	if got.Models[0].ApprovalSignature.KeyID != signer {
		t.Errorf("approval signed by %s, want the online signer %s", got.Models[0].ApprovalSignature.KeyID, signer)
	}
	if err := cur.Online.VerifyApproval(got.Models[0].Approval(), got.Models[0].ApprovalSignature); err != nil {
		t.Errorf("approval signature: %v", err)
	}
}
