package state

import (
	"crypto/ed25519"
	"crypto/rand"
	"testing"

	"github.com/driftline/driftline/shared/artifact"
)

// TestApprovalSignatureBindsOutputDigest: a stored approval made without the output digest is
// still served for a version without an output reference, and is not served (so the hub
// re-signs) for a version with one; an approval that binds the digest is served.
func TestApprovalSignatureBindsOutputDigest(t *testing.T) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	online := artifact.NewKeyRing(pub)
	plain := artifact.Approval{Name: "m", Version: 1, ManifestDigest: artifact.DigestOf([]byte("manifest"))}
	withOut := plain
	withOut.OutputDigest = artifact.DigestOf([]byte("output reference"))
	old := artifact.SignApproval(priv, plain)
	if online.VerifyApproval(withOut, old) == nil {
		t.Fatal("an approval without the output digest verifies for one with it")
	}
	mv := ModelVersion{Model: "m", Version: 1, Signatures: []Signature{{KeyID: old.KeyID, Sig: old.Sig, Kind: SigApproval}}}
	if got, ok := ApprovalSignature(mv, plain, online); !ok || got != old {
		t.Fatalf("version without outputs: %+v %v, want the stored approval", got, ok)
	}
	if got, ok := ApprovalSignature(mv, withOut, online); ok {
		t.Fatalf("version with outputs: %+v served, want none (re-sign)", got)
	}
	bound := artifact.SignApproval(priv, withOut)
	mv.Signatures = append(mv.Signatures, Signature{KeyID: bound.KeyID, Sig: bound.Sig, Kind: SigApproval})
	if got, ok := ApprovalSignature(mv, withOut, online); !ok || got != bound {
		t.Fatalf("version with outputs and a bound approval: %+v %v", got, ok)
	}
}
