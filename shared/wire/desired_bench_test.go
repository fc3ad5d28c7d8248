package wire_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"testing"
	"time"

	"github.com/driftline/driftline/shared/artifact"
	"github.com/driftline/driftline/shared/wire"
)

// BenchmarkVerifyDesired measures what an agent spends on one incoming desired state with one
// model: decoding it, verifying its signature and the model's approval signature.
func BenchmarkVerifyDesired(b *testing.B) {
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	ring := artifact.NewKeyRing(key.Public().(ed25519.PublicKey))
	dig := artifact.DigestOf([]byte("manifest"))
	m := wire.DesiredModel{Name: "iris", Version: 3, ManifestDigest: dig, Size: 1 << 20,
		ContractDigest: artifact.DigestOf([]byte("c")), ProfileDigest: artifact.DigestOf([]byte("p")), Dataset: "flowers", DatasetVersion: 2}
	m.ApprovalSignature = artifact.SignApproval(key, m.Approval())
	now := time.Now()
	d := wire.Desired{Header: wire.Header{DeviceID: "pump-7", TS: now.UnixMilli()}, Rev: 42, Models: []wire.DesiredModel{m},
		IssuedAt: now.UnixMilli(), Expires: now.Add(time.Hour).UnixMilli()}
	d.Sign(key)
	p, err := wire.Encode(d)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		got, err := wire.DecodeDesired(p)
		if err != nil {
			b.Fatal(err)
		}
		if err := got.Verify(ring); err != nil {
			b.Fatal(err)
		}
		if err := ring.VerifyApproval(got.Models[0].Approval(), got.Models[0].ApprovalSignature); err != nil {
			b.Fatal(err)
		}
	}
}
