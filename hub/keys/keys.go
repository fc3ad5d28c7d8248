// Package keys is the hub's side of the cluster's root of trust (shared/trust): it builds the
// commands that install a root version and its online keys (bootstrap, rotate, retire), and
// hands this node's signers the current online key from the replicated state. docs/security.md
// says why the online key is replicated and the root key is not.
package keys

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/driftline/driftline/hub/state"
	"github.com/driftline/driftline/shared/artifact"
	"github.com/driftline/driftline/shared/trust"
)

// RootLifetime is how long a root version is valid. An agent whose newest root expired refuses
// desired states until a renewed one reaches it (TUF); every rotation (key rotate, retire,
// rotate-root) issues a fresh one.
const RootLifetime = 10 * 365 * 24 * time.Hour

// Errors of this package.
var (
	// ErrNoTrust means the cluster has no root of trust yet (the first leader creates it).
	ErrNoTrust = errors.New("keys: the cluster has no root of trust yet")
	// ErrKeyUnknown means a key id names no active online key.
	ErrKeyUnknown = errors.New("keys: no such active key")
	// ErrLastKey means retiring the key would leave no active key, or retire the signer.
	ErrLastKey = errors.New("keys: cannot retire the signing key: rotate first")
)

// Bootstrap returns the command installing root version 1: rootKey certifies online as the
// only online key, which signs.
func Bootstrap(rootKey, online ed25519.PrivateKey, now time.Time) (state.TrustSet, error) {
	pub := online.Public().(ed25519.PublicKey)
	root, err := trust.New(rootKey, []ed25519.PublicKey{pub}, now.Add(RootLifetime))
	if err != nil {
		return state.TrustSet{}, err
	}
	k := ActiveKey(online, now)
	return state.TrustSet{Root: root, Signer: k.KeyID, Keys: []state.TrustKey{k}}, nil
}

// Rotate returns the command installing the root after latest: the active keys of cur plus
// next (a fresh key when nil), which becomes the signer. The old keys stay certified until
// retired, so desired states already signed keep verifying while agents learn the new root.
func Rotate(cur state.Trust, latest []byte, rootKey, next ed25519.PrivateKey, now time.Time) (state.TrustSet, error) {
	if next == nil {
		var err error
		if _, next, err = ed25519.GenerateKey(rand.Reader); err != nil {
			return state.TrustSet{}, err
		}
	}
	k := ActiveKey(next, now)
	keys := append(append([]state.TrustKey(nil), cur.Keys...), k)
	return build(latest, rootKey, k.KeyID, keys, now)
}

// Retire returns the command installing the root after latest without key id: agents that
// learn it refuse that key's signatures from then on. The signer cannot be retired.
func Retire(cur state.Trust, latest []byte, rootKey ed25519.PrivateKey, id string, now time.Time) (state.TrustSet, error) {
	keys, err := retired(cur, id, now)
	if err != nil {
		return state.TrustSet{}, err
	}
	return build(latest, rootKey, cur.Signer, keys, now)
}

// RetireSigned is Retire with the next root already signed elsewhere (offline root key); the
// state machine checks that it chains and certifies exactly the remaining keys.
func RetireSigned(cur state.Trust, root []byte, id string, now time.Time) (state.TrustSet, error) {
	keys, err := retired(cur, id, now)
	if err != nil {
		return state.TrustSet{}, err
	}
	return state.TrustSet{Root: root, Signer: cur.Signer, Keys: keys}, nil
}

// retired returns cur's keys with id retired.
func retired(cur state.Trust, id string, now time.Time) ([]state.TrustKey, error) {
	if id == cur.Signer {
		return nil, ErrLastKey
	}
	keys := append([]state.TrustKey(nil), cur.Keys...)
	found := false
	for i, k := range keys {
		if k.KeyID == id && k.Status == state.KeyActive {
			k.Status, k.Private, k.RetiredAt = state.KeyRetired, nil, now.UnixMilli()
			keys[i], found = k, true
		}
	}
	if !found {
		return nil, fmt.Errorf("%w: %s", ErrKeyUnknown, id)
	}
	return keys, nil
}

func build(latest []byte, rootKey ed25519.PrivateKey, signer string, keys []state.TrustKey, now time.Time) (state.TrustSet, error) {
	var pubs []ed25519.PublicKey
	for _, k := range keys {
		if k.Status == state.KeyActive {
			pubs = append(pubs, ed25519.PrivateKey(k.Private).Public().(ed25519.PublicKey))
		}
	}
	root, err := trust.Next(latest, rootKey, pubs, now.Add(RootLifetime))
	if err != nil {
		return state.TrustSet{}, err
	}
	return state.TrustSet{Root: root, Signer: signer, Keys: keys}, nil
}

// ActiveKey describes priv as a new active online key added at now.
func ActiveKey(priv ed25519.PrivateKey, now time.Time) state.TrustKey {
	pub := priv.Public().(ed25519.PublicKey)
	return state.TrustKey{KeyID: artifact.KeyID(pub), PublicKey: artifact.PublicKeyBase64(pub),
		Private: append([]byte(nil), priv...), Status: state.KeyActive, AddedAt: now.UnixMilli()}
}

// Current is what a signer on this node needs: the key that signs now, the online keys the
// current root certifies, and the root documents agents chain through.
type Current struct {
	// RootVersion is the current root's version.
	RootVersion int64
	// Key is the signer's private key.
	Key ed25519.PrivateKey
	// Online are the keys the current root certifies.
	Online artifact.KeyRing
	// Roots are the root documents after version 1, oldest first (wire.Desired.Roots).
	Roots []json.RawMessage
}

// Source reads Current from a node's replicated state, re-reading only when the trust state
// changed. It is safe for concurrent use.
type Source struct {
	R state.Reader

	mu  sync.Mutex
	cur Current
	at  int64 // Trust.UpdatedAt of cur
}

// Current returns the node's current signer; ErrNoTrust before the first root exists.
func (s *Source) Current() (Current, error) {
	t, err := s.R.Trust()
	if errors.Is(err, state.ErrNotFound) {
		return Current{}, ErrNoTrust
	}
	if err != nil {
		return Current{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur.Key != nil && s.cur.RootVersion == t.RootVersion && s.at == t.UpdatedAt {
		return s.cur, nil
	}
	key, err := t.SignerKey()
	if err != nil {
		return Current{}, err
	}
	roots, err := s.R.TrustRoots()
	if err != nil {
		return Current{}, err
	}
	if len(roots) == 0 {
		return Current{}, ErrNoTrust
	}
	last, err := trust.Parse(roots[len(roots)-1])
	if err != nil {
		return Current{}, err
	}
	c := Current{RootVersion: last.Version(), Key: key, Online: last.Online()}
	for _, r := range roots[1:] {
		c.Roots = append(c.Roots, json.RawMessage(r))
	}
	s.cur, s.at = c, t.UpdatedAt
	return c, nil
}
