// Package trust is Driftline's one root of trust for a cluster, in TUF's root metadata format
// (go-tuf's metadata package): an offline-capable root key certifies the online keys that sign
// approvals and desired states (TUF's "targets" role). A new key set is a new root version,
// signed by the previous root's key threshold and its own; an agent chains from the root it was
// enrolled with to the newest one it is shown, and from then on trusts only that root's online
// keys. docs/security.md has the threat model.
package trust

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/trustedmetadata"

	"github.com/driftline/driftline/shared/artifact"
)

// OnlineRole is the TUF role whose keys sign approvals and desired states.
const OnlineRole = metadata.TARGETS

// MaxRootBytes bounds one root document an agent accepts.
const MaxRootBytes = 64 << 10

// Errors returned by this package; every returned error wraps one of them.
var (
	// ErrBadRoot means a root document does not parse, is not a root, or is not signed by the
	// threshold of its own root keys.
	ErrBadRoot = errors.New("trust: invalid root metadata")
	// ErrChain means a newer root does not chain from the trusted one: not the next version, or
	// not signed by the threshold of the trusted root's keys.
	ErrChain = errors.New("trust: root does not chain from the trusted root")
	// ErrExpired means the newest trusted root has expired: TUF refuses to verify anything new
	// with it (a freeze attack, or a cluster whose root was not renewed) until a newer,
	// unexpired root chains from it.
	ErrExpired = errors.New("trust: root of trust expired")
)

// Root is a root metadata document that verified (against itself when parsed, against its
// predecessor when chained). The zero Root trusts nothing.
type Root struct {
	meta   *metadata.Metadata[metadata.RootType]
	raw    []byte
	online artifact.KeyRing
}

// New returns version 1 of a cluster's root: rootKey is the root role's only key (threshold
// 1) and online the keys of the online role (threshold 1); it also holds TUF's snapshot and
// timestamp roles, which Driftline does not use.
func New(rootKey ed25519.PrivateKey, online []ed25519.PublicKey, expires time.Time) ([]byte, error) {
	m := metadata.Root(expires.UTC().Truncate(time.Second))
	rk, err := metadata.KeyFromPublicKey(rootKey.Public())
	if err != nil {
		return nil, fmt.Errorf("trust: root key: %w", err)
	}
	if err := m.Signed.AddKey(rk, metadata.ROOT); err != nil {
		return nil, fmt.Errorf("trust: root key: %w", err)
	}
	if err := setOnline(m, online); err != nil {
		return nil, err
	}
	return sign(m, rootKey)
}

// Next returns the root after prev (which must verify): the same root keys, version + 1, the
// online role's keys replaced by online, signed by rootKey (a key of prev's root role).
func Next(prev []byte, rootKey ed25519.PrivateKey, online []ed25519.PublicKey, expires time.Time) ([]byte, error) {
	p, err := Parse(prev)
	if err != nil {
		return nil, err
	}
	m, err := metadata.Root().FromBytes(p.raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadRoot, err)
	}
	m.ClearSignatures()
	m.Signed.Version++
	m.Signed.Expires = expires.UTC().Truncate(time.Second)
	for _, role := range []string{OnlineRole, metadata.SNAPSHOT, metadata.TIMESTAMP} {
		for _, id := range append([]string(nil), m.Signed.Roles[role].KeyIDs...) {
			if err := m.Signed.RevokeKey(id, role); err != nil {
				return nil, fmt.Errorf("trust: %w", err)
			}
		}
	}
	if err := setOnline(m, online); err != nil {
		return nil, err
	}
	return sign(m, rootKey)
}

// NextRootKey returns the root after prev (which must verify) with the root role's key replaced:
// version + 1, the same online keys, newRootKey the root role's only key (threshold 1). As TUF
// requires for a root rotation, it is signed by oldRootKey (a key of prev's root role, so
// holders of prev accept it) and by newRootKey (its own threshold). From then on only
// newRootKey can sign the next version (Next).
func NextRootKey(prev []byte, oldRootKey, newRootKey ed25519.PrivateKey, expires time.Time) ([]byte, error) {
	p, err := Parse(prev)
	if err != nil {
		return nil, err
	}
	if !p.HasRootKey(oldRootKey.Public().(ed25519.PublicKey)) {
		return nil, fmt.Errorf("%w: the old root key is not a root key of version %d", ErrBadRoot, p.Version())
	}
	m, err := metadata.Root().FromBytes(p.raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadRoot, err)
	}
	m.ClearSignatures()
	m.Signed.Version++
	m.Signed.Expires = expires.UTC().Truncate(time.Second)
	for _, id := range append([]string(nil), m.Signed.Roles[metadata.ROOT].KeyIDs...) {
		if err := m.Signed.RevokeKey(id, metadata.ROOT); err != nil {
			return nil, fmt.Errorf("trust: %w", err)
		}
	}
	nk, err := metadata.KeyFromPublicKey(newRootKey.Public())
	if err != nil {
		return nil, fmt.Errorf("trust: new root key: %w", err)
	}
	if err := m.Signed.AddKey(nk, metadata.ROOT); err != nil {
		return nil, fmt.Errorf("trust: new root key: %w", err)
	}
	m.Signed.Roles[metadata.ROOT].Threshold = 1
	b, err := sign(m, oldRootKey, newRootKey)
	if err != nil {
		return nil, err
	}
	if _, err := p.Update(b); err != nil { // what holders of prev will do
		return nil, err
	}
	return b, nil
}

// HasRootKey reports whether pub is a key of r's root role (one that may sign its successor).
func (r Root) HasRootKey(pub ed25519.PublicKey) bool {
	if r.meta == nil {
		return false
	}
	k, err := metadata.KeyFromPublicKey(pub)
	if err != nil {
		return false
	}
	id, err := k.ID()
	return err == nil && slices.Contains(r.meta.Signed.Roles[metadata.ROOT].KeyIDs, id)
}

func setOnline(m *metadata.Metadata[metadata.RootType], online []ed25519.PublicKey) error {
	if len(online) == 0 {
		return fmt.Errorf("%w: no online key", ErrBadRoot)
	}
	for _, pub := range online {
		k, err := metadata.KeyFromPublicKey(pub)
		if err != nil {
			return fmt.Errorf("trust: online key: %w", err)
		}
		for _, role := range []string{OnlineRole, metadata.SNAPSHOT, metadata.TIMESTAMP} {
			if err := m.Signed.AddKey(k, role); err != nil {
				return fmt.Errorf("trust: online key: %w", err)
			}
		}
	}
	return nil
}

func sign(m *metadata.Metadata[metadata.RootType], rootKeys ...ed25519.PrivateKey) ([]byte, error) {
	for _, rootKey := range rootKeys {
		signer, err := signature.LoadED25519Signer(rootKey)
		if err != nil {
			return nil, fmt.Errorf("trust: root signer: %w", err)
		}
		if _, err := m.Sign(signer); err != nil {
			return nil, fmt.Errorf("trust: sign root: %w", err)
		}
	}
	b, err := m.ToBytes(false)
	if err != nil {
		return nil, fmt.Errorf("trust: encode root: %w", err)
	}
	if _, err := Parse(b); err != nil { // a root the agents would refuse is a bug here
		return nil, err
	}
	return b, nil
}

// Parse checks that b is a root document signed by the threshold of its own root keys whose
// online role has at least one ed25519 key. It is how an agent takes the root it is enrolled
// with (trust on first use of a file the operator handed it); later roots must chain (Update).
func Parse(b []byte) (Root, error) {
	if len(b) > MaxRootBytes {
		return Root{}, fmt.Errorf("%w: %d bytes, at most %d", ErrBadRoot, len(b), MaxRootBytes)
	}
	m, err := metadata.Root().FromBytes(b)
	if err != nil {
		return Root{}, fmt.Errorf("%w: %v", ErrBadRoot, err)
	}
	if m.Signed.Type != metadata.ROOT {
		return Root{}, fmt.Errorf("%w: type %q", ErrBadRoot, m.Signed.Type)
	}
	if err := m.VerifyDelegate(metadata.ROOT, m); err != nil {
		return Root{}, fmt.Errorf("%w: %v", ErrBadRoot, err)
	}
	return fromMeta(m, b)
}

func fromMeta(m *metadata.Metadata[metadata.RootType], b []byte) (Root, error) {
	role := m.Signed.Roles[OnlineRole]
	if role == nil || len(role.KeyIDs) == 0 {
		return Root{}, fmt.Errorf("%w: no %s keys", ErrBadRoot, OnlineRole)
	}
	var pubs []ed25519.PublicKey
	for _, id := range role.KeyIDs {
		k := m.Signed.Keys[id]
		if k == nil {
			return Root{}, fmt.Errorf("%w: %s key %.16s is not listed", ErrBadRoot, OnlineRole, id)
		}
		pk, err := k.ToPublicKey()
		if err != nil {
			return Root{}, fmt.Errorf("%w: %v", ErrBadRoot, err)
		}
		pub, ok := pk.(ed25519.PublicKey)
		if !ok {
			return Root{}, fmt.Errorf("%w: %s key %.16s is %T, want ed25519", ErrBadRoot, OnlineRole, id, pk)
		}
		pubs = append(pubs, pub)
	}
	return Root{meta: m, raw: append([]byte(nil), b...), online: artifact.NewKeyRing(pubs...)}, nil
}

// IsZero reports whether r is the zero Root.
func (r Root) IsZero() bool { return r.meta == nil }

// Version is the root's version, from 1.
func (r Root) Version() int64 {
	if r.meta == nil {
		return 0
	}
	return r.meta.Signed.Version
}

// Expires is when the root's metadata expires.
func (r Root) Expires() time.Time {
	if r.meta == nil {
		return time.Time{}
	}
	return r.meta.Signed.Expires
}

// CheckExpiry returns an error wrapping ErrExpired when r expired at or before now (nil for the
// zero Root, which has no expiry). As in TUF's client workflow (5.3.10), it is checked on the
// newest root reached: roots passed on the way may have expired, and an expired root still
// parses and chains (Parse, Update), so a renewed root can replace it.
func (r Root) CheckExpiry(now time.Time) error {
	if r.meta == nil || now.Before(r.meta.Signed.Expires) {
		return nil
	}
	return fmt.Errorf("%w: version %d expired at %s", ErrExpired, r.Version(), r.meta.Signed.Expires.UTC().Format(time.RFC3339))
}

// RootKeyIDs names the root role's keys and threshold, for comparing two roots' root roles.
func (r Root) RootKeyIDs() string {
	if r.meta == nil {
		return ""
	}
	role := r.meta.Signed.Roles[metadata.ROOT]
	ids := append([]string(nil), role.KeyIDs...)
	sort.Strings(ids)
	return fmt.Sprintf("%d:%s", role.Threshold, strings.Join(ids, ","))
}

// Bytes returns the document as it was signed.
func (r Root) Bytes() []byte { return r.raw }

// Online returns the keys of the online role: the only keys whose approvals and desired states
// this root accepts.
func (r Root) Online() artifact.KeyRing { return r.online }

// Update returns the root that next (version r.Version()+1) establishes, following TUF's root
// rotation rule: next must be signed by the threshold of r's root keys and by its own.
func (r Root) Update(next []byte) (Root, error) {
	if r.meta == nil {
		return Root{}, fmt.Errorf("%w: no trusted root", ErrChain)
	}
	if len(next) > MaxRootBytes {
		return Root{}, fmt.Errorf("%w: %d bytes, at most %d", ErrBadRoot, len(next), MaxRootBytes)
	}
	tm, err := trustedmetadata.New(r.raw)
	if err != nil {
		return Root{}, fmt.Errorf("%w: %v", ErrBadRoot, err)
	}
	m, err := tm.UpdateRoot(next)
	if err != nil {
		return Root{}, fmt.Errorf("%w: version %d: %v", ErrChain, r.Version()+1, err)
	}
	return fromMeta(m, next)
}

// Chain applies, in order, every root in roots whose version is above r's (older ones are
// skipped: they are history the agent already passed). It returns the newest root reached and
// stops at the first that does not chain, returning it in err with the root reached so far.
func (r Root) Chain(roots [][]byte) (Root, error) {
	cur := r
	for _, b := range roots {
		v, err := peekVersion(b)
		if err != nil {
			return cur, err
		}
		if v <= cur.Version() {
			continue
		}
		next, err := cur.Update(b)
		if err != nil {
			return cur, err
		}
		cur = next
	}
	return cur, nil
}

// peekVersion reads a root document's version without verifying it.
func peekVersion(b []byte) (int64, error) {
	if len(b) > MaxRootBytes {
		return 0, fmt.Errorf("%w: %d bytes, at most %d", ErrBadRoot, len(b), MaxRootBytes)
	}
	m, err := metadata.Root().FromBytes(b)
	if err != nil {
		return 0, fmt.Errorf("%w: %v", ErrBadRoot, err)
	}
	return m.Signed.Version, nil
}
