package trust_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"github.com/driftline/driftline/shared/artifact"
	"github.com/driftline/driftline/shared/trust"
)

func key(t *testing.T) ed25519.PrivateKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func pub(k ed25519.PrivateKey) ed25519.PublicKey { return k.Public().(ed25519.PublicKey) }

// TestRootChain: a rotated root chains from the one before it and certifies exactly its online
// keys; a root signed by another root key, a skipped version, a replayed older root and a
// tampered one are refused, and the trusted root stays what it was.
func TestRootChain(t *testing.T) {
	rootKey, k1, k2 := key(t), key(t), key(t)
	exp := time.Now().Add(time.Hour)
	b1, err := trust.New(rootKey, []ed25519.PublicKey{pub(k1)}, exp)
	if err != nil {
		t.Fatal(err)
	}
	r1, err := trust.Parse(b1)
	if err != nil {
		t.Fatal(err)
	}
	if r1.Version() != 1 || !r1.Online().Has(artifact.KeyID(pub(k1))) || r1.Online().Len() != 1 {
		t.Fatalf("v1: version %d, online %v", r1.Version(), r1.Online().IDs())
	}
	b2, err := trust.Next(b1, rootKey, []ed25519.PublicKey{pub(k1), pub(k2)}, exp) // rotate: add k2
	if err != nil {
		t.Fatal(err)
	}
	b3, err := trust.Next(b2, rootKey, []ed25519.PublicKey{pub(k2)}, exp) // retire k1
	if err != nil {
		t.Fatal(err)
	}
	r3, err := r1.Chain([][]byte{b2, b3})
	if err != nil {
		t.Fatal(err)
	}
	if r3.Version() != 3 || r3.Online().Has(artifact.KeyID(pub(k1))) || !r3.Online().Has(artifact.KeyID(pub(k2))) {
		t.Fatalf("v3: version %d, online %v", r3.Version(), r3.Online().IDs())
	}
	if again, err := r3.Chain([][]byte{b2, b3}); err != nil || again.Version() != 3 {
		t.Fatalf("re-chaining what was passed: version %d, %v", again.Version(), err)
	}

	otherRoot := key(t)
	f1, _ := trust.New(otherRoot, []ed25519.PublicKey{pub(key(t))}, exp)
	forged, _ := trust.Next(f1, otherRoot, []ed25519.PublicKey{pub(key(t))}, exp) // version 2, wrong root key
	tampered := []byte(string(b2[:len(b2)-10]) + string(b2[len(b2)-10:]))
	for i := range tampered {
		if tampered[i] == '1' { // flip one digit inside the signed part
			tampered[i] = '2'
			break
		}
	}
	for name, b := range map[string][]byte{"other root key": forged, "skipped version": b3, "tampered": tampered} {
		got, err := r1.Update(b)
		if err == nil {
			t.Errorf("%s: accepted as version %d", name, got.Version())
		}
		if !errors.Is(err, trust.ErrChain) && !errors.Is(err, trust.ErrBadRoot) {
			t.Errorf("%s: error %v, want ErrChain or ErrBadRoot", name, err)
		}
	}
	if _, err := trust.Parse([]byte(`{"signed":{"_type":"root"}}`)); !errors.Is(err, trust.ErrBadRoot) {
		t.Errorf("unsigned root: %v, want ErrBadRoot", err)
	}
}

// TestRootExpiry follows TUF's rule (client workflow 5.3.10): a root's own expiry is checked on
// the newest root reached, not on the roots passed on the way. An expired root still parses and
// still chains (so a renewed one can replace it, and a device keeps its place in the chain), but
// CheckExpiry refuses it until a newer, unexpired root arrives.
func TestRootExpiry(t *testing.T) {
	rootKey, k1 := key(t), key(t)
	now := time.Now()
	past, future := now.Add(-time.Hour), now.Add(time.Hour)
	online := []ed25519.PublicKey{pub(k1)}

	b1, err := trust.New(rootKey, online, past)
	if err != nil {
		t.Fatal(err)
	}
	r1, err := trust.Parse(b1)
	if err != nil {
		t.Fatalf("an expired root must still parse (the agent keeps it and reports it): %v", err)
	}
	if err := r1.CheckExpiry(now); !errors.Is(err, trust.ErrExpired) {
		t.Fatalf("expired root v1: CheckExpiry = %v, want ErrExpired", err)
	}
	if err := r1.CheckExpiry(past.Add(-time.Minute)); err != nil {
		t.Fatalf("root v1 before its expiry: %v", err)
	}
	b2, err := trust.Next(b1, rootKey, online, past) // also expired: passed on the way
	if err != nil {
		t.Fatal(err)
	}
	b3, err := trust.Next(b2, rootKey, online, future) // renewed
	if err != nil {
		t.Fatal(err)
	}
	r2, err := r1.Chain([][]byte{b2})
	if err != nil || r2.Version() != 2 {
		t.Fatalf("chain to expired v2: version %d, %v", r2.Version(), err)
	}
	if err := r2.CheckExpiry(now); !errors.Is(err, trust.ErrExpired) {
		t.Fatalf("expired root v2: CheckExpiry = %v, want ErrExpired", err)
	}
	r3, err := r1.Chain([][]byte{b2, b3})
	if err != nil || r3.Version() != 3 {
		t.Fatalf("chain through expired roots to v3: version %d, %v", r3.Version(), err)
	}
	if err := r3.CheckExpiry(now); err != nil {
		t.Fatalf("renewed root v3: %v", err)
	}
	if err := (trust.Root{}).CheckExpiry(now); err != nil {
		t.Fatalf("the zero root has no expiry to check: %v", err)
	}
}

// TestRootKeyRotation: NextRootKey replaces the root role's key, TUF's way: version N+1 is
// signed by the old root key (so holders of N accept it) and by the new one (its own
// threshold). It keeps the online keys. Holders chain to it; from then on only the new root key
// can sign the next version, and a root signed by the new key alone cannot replace N.
func TestRootKeyRotation(t *testing.T) {
	oldKey, newKey, k1, k2 := key(t), key(t), key(t), key(t)
	exp := time.Now().Add(time.Hour)
	b1, err := trust.New(oldKey, []ed25519.PublicKey{pub(k1)}, exp)
	if err != nil {
		t.Fatal(err)
	}
	r1, _ := trust.Parse(b1)
	b2, err := trust.NextRootKey(b1, oldKey, newKey, exp)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := r1.Update(b2)
	if err != nil {
		t.Fatalf("v2 with the new root key does not chain from v1: %v", err)
	}
	if r2.Version() != 2 || r2.RootKeyIDs() == r1.RootKeyIDs() || !r2.HasRootKey(pub(newKey)) || r2.HasRootKey(pub(oldKey)) {
		t.Fatalf("v2: version %d, root keys %s (v1 %s)", r2.Version(), r2.RootKeyIDs(), r1.RootKeyIDs())
	}
	if !r2.Online().Has(artifact.KeyID(pub(k1))) || r2.Online().Len() != 1 {
		t.Fatalf("v2 online keys %v, want v1's", r2.Online().IDs())
	}
	// The new root key signs v3 (a key rotation); the old one no longer can.
	b3, err := trust.Next(b2, newKey, []ed25519.PublicKey{pub(k1), pub(k2)}, exp)
	if err != nil {
		t.Fatal(err)
	}
	if r3, err := r1.Chain([][]byte{b2, b3}); err != nil || r3.Version() != 3 || !r3.Online().Has(artifact.KeyID(pub(k2))) {
		t.Fatalf("chain v1→v3 through the root key rotation: version %d, %v", r3.Version(), err)
	}
	if _, err := trust.Next(b2, oldKey, []ed25519.PublicKey{pub(k2)}, exp); !errors.Is(err, trust.ErrBadRoot) {
		t.Fatalf("the retired root key signed v3: %v, want ErrBadRoot", err)
	}
	// A root key swap not signed by the old key (a thief of nothing but a fresh key) is refused.
	thief := key(t)
	m, err := trust.NextRootKey(b1, thief, thief, exp)
	if err == nil {
		if _, err := r1.Update(m); !errors.Is(err, trust.ErrChain) {
			t.Fatalf("root key swap signed by a stranger: %v, want ErrChain", err)
		}
	} else if !errors.Is(err, trust.ErrBadRoot) && !errors.Is(err, trust.ErrChain) {
		t.Fatalf("NextRootKey with a stranger's key: %v", err)
	}
}
