package keys_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"github.com/driftline/driftline/hub/command"
	"github.com/driftline/driftline/hub/keys"
	"github.com/driftline/driftline/hub/state"
	"github.com/driftline/driftline/hub/state/statetest"
)

func newKey(t *testing.T) ed25519.PrivateKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestTrustSetOnlyMovesForward: the state machine takes root version 1, then rotations and
// retirements that chain from it, and refuses a second version 1, a root signed by another
// root key, a replayed older command, and key lists that do not match the root.
func TestTrustSetOnlyMovesForward(t *testing.T) {
	st := statetest.New(t)
	apply := func(set state.TrustSet) error {
		env, err := command.New(command.TypeTrustSet, "", time.Now().UnixMilli(), "test", set)
		if err != nil {
			t.Fatal(err)
		}
		_, err = st.Apply(context.Background(), env)
		return err
	}
	src := &keys.Source{R: st.Reader()}
	if _, err := src.Current(); !errors.Is(err, keys.ErrNoTrust) {
		t.Fatalf("before bootstrap: %v, want ErrNoTrust", err)
	}
	rootKey, online := newKey(t), newKey(t)
	v1, err := keys.Bootstrap(rootKey, online, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := apply(v1); err != nil {
		t.Fatal(err)
	}
	if again, _ := keys.Bootstrap(newKey(t), newKey(t), time.Now()); apply(again) == nil {
		t.Fatal("a second version 1 from another root key was accepted")
	}
	cur := func() (state.Trust, []byte) {
		tr, err := st.Reader().Trust()
		if err != nil {
			t.Fatal(err)
		}
		roots, _ := st.Reader().TrustRoots()
		return tr, roots[len(roots)-1]
	}
	tr, latest := cur()
	if forged, err := keys.Rotate(tr, latest, newKey(t), nil, time.Now()); err == nil && apply(forged) == nil {
		t.Fatal("a rotation signed by a stranger's root key was accepted")
	}
	v2, err := keys.Rotate(tr, latest, rootKey, nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := apply(v2); err != nil {
		t.Fatal(err)
	}
	if apply(v2) == nil {
		t.Fatal("the same version 2 applied twice")
	}
	tr, latest = cur()
	if _, err := keys.Retire(tr, latest, rootKey, tr.Signer, time.Now()); !errors.Is(err, keys.ErrLastKey) {
		t.Fatalf("retiring the signer: %v, want ErrLastKey", err)
	}
	v3, err := keys.Retire(tr, latest, rootKey, v1.Signer, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	bad := v3
	bad.Keys = append([]state.TrustKey(nil), v3.Keys...)
	bad.Keys[0].Private = online // a retired key must not keep its private half
	if apply(bad) == nil {
		t.Fatal("a retired key with its private key was accepted")
	}
	if err := apply(v3); err != nil {
		t.Fatal(err)
	}
	c, err := src.Current()
	if err != nil {
		t.Fatal(err)
	}
	if c.RootVersion != 3 || c.Online.Has(v1.Signer) || !c.Online.Has(v2.Signer) || len(c.Roots) != 2 {
		t.Fatalf("current: version %d, online %v, %d roots", c.RootVersion, c.Online.IDs(), len(c.Roots))
	}
}
