package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/driftline/driftline/agent/devicedb"
	"github.com/driftline/driftline/shared/artifact"
	"github.com/driftline/driftline/shared/trust"
	"github.com/driftline/driftline/shared/wire"
)

// keyTrustChain is where the agent keeps the root documents it chained through (a JSON array,
// oldest first), re-verified from the configured root at every start; keyTrustRoot the newest
// root alone, as agents before root key rotation kept it; keyRevoked the revocation list it
// learnt.
const (
	keyTrustChain = "trust/chain"
	keyTrustRoot  = "trust/root"
	keyRevoked    = "trust/revoked"
)

// maxRevoked bounds the revocation list the agent keeps (the newest are kept).
const maxRevoked = 4096

// trustStore holds what the agent trusts: the cluster's root (its online keys sign approvals
// and desired states), or, for an agent configured with trusted_keys only, that fixed key set;
// and what it last accepted, to refuse replays and notice a frozen feed. Safe for concurrent
// use: the MQTT goroutine filters desired messages with it while the reconciler acts.
type trustStore struct {
	ns devicedb.Namespace

	mu      sync.Mutex
	root    trust.Root       // zero with trusted_keys only
	fixed   artifact.KeyRing // the trusted_keys
	lastRev uint64           // the last rev acted on (reconcile.Trust.ActedOn)
	issued  int64            // IssuedAt of the newest valid desired state seen
	expires int64            // its Expires, Unix ms (0: none yet)
	revoked []string         // "NAME@VERSION" the hub withdrew, oldest first
}

// newTrustStore starts from the configured root, or from the newer one the agent chained to
// before (kept in ns), whichever is newer; fixed are the configured trusted_keys.
func newTrustStore(ns devicedb.Namespace, configured trust.Root, fixed artifact.KeyRing) (*trustStore, error) {
	t := &trustStore{ns: ns, root: configured, fixed: fixed}
	if b, err := ns.Get([]byte(keyRevoked)); err == nil {
		_ = json.Unmarshal(b, &t.revoked) // damaged: start empty, the next desired state refills it
	} else if !errors.Is(err, devicedb.ErrNotFound) {
		return nil, fmt.Errorf("load revocation list: %w", err)
	}
	if configured.IsZero() {
		return t, nil
	}
	if b, err := ns.Get([]byte(keyTrustChain)); err == nil {
		// The chain is verified again from the configured root, by TUF's rule: it survives a
		// root key rotation, and a chain from another cluster (re-enrolment) is not taken.
		var docs []json.RawMessage
		if json.Unmarshal(b, &docs) == nil {
			roots := make([][]byte, len(docs))
			for i, d := range docs {
				roots[i] = d
			}
			if saved, _ := configured.Chain(roots); saved.Version() > configured.Version() {
				t.root = saved
			}
			return t, nil
		}
	} else if !errors.Is(err, devicedb.ErrNotFound) {
		return nil, fmt.Errorf("load trusted root chain: %w", err)
	}
	b, err := ns.Get([]byte(keyTrustRoot))
	if errors.Is(err, devicedb.ErrNotFound) {
		return t, nil
	}
	if err != nil {
		return nil, fmt.Errorf("load trusted root: %w", err)
	}
	// Kept by an agent before chains were: it is taken only if it has the configured root's
	// root key (no root key rotation then), e.g. not after re-enrolment into another cluster.
	saved, err := trust.Parse(b)
	if err == nil && saved.Version() > configured.Version() && sameRootKeys(configured, saved) {
		t.root = saved
	}
	return t, nil
}

// sameRootKeys reports whether b's root role is a successor of a's, for a root kept alone (from
// before root key rotation existed, when the root key ids stayed equal).
func sameRootKeys(a, b trust.Root) bool { return a.RootKeyIDs() == b.RootKeyIDs() }

// ring returns the keys that may sign approvals and desired states now.
func (t *trustStore) ring() artifact.KeyRing {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.root.IsZero() {
		return t.fixed
	}
	return t.root.Online()
}

// rootVersion is the version of the root held, 0 with trusted_keys only.
func (t *trustStore) rootVersion() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.root.Version()
}

// rootExpiry returns trust.ErrExpired (wrapped) when the root held expired before now; nil
// with trusted_keys only.
func (t *trustStore) rootExpiry(now time.Time) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.root.CheckExpiry(now)
}

// rootExpires is when the root held expires (zero with trusted_keys only).
func (t *trustStore) rootExpires() time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.root.Expires()
}

// learn chains to the newest of roots that chains from the root held, and persists it. It
// returns an error (ErrChain, ErrBadRoot) for the first that does not, keeping what it reached.
func (t *trustStore) learn(roots [][]byte) (changed bool, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.root.IsZero() || len(roots) == 0 {
		return false, nil
	}
	next, err := t.root.Chain(roots)
	if next.Version() > t.root.Version() {
		if serr := t.saveChain(roots, next); serr != nil {
			return false, serr
		}
		t.root, changed = next, true
	}
	return changed, err
}

// saveChain persists the root documents up to next's version: the chain from version 2 that
// the hub sends, which the next start re-verifies from the configured root. Documents of
// versions the agent passed before are kept from the stored chain when roots lacks them.
func (t *trustStore) saveChain(roots [][]byte, next trust.Root) error {
	byVersion := map[int64]json.RawMessage{}
	if b, err := t.ns.Get([]byte(keyTrustChain)); err == nil {
		var old []json.RawMessage
		_ = json.Unmarshal(b, &old) // damaged: rebuilt from roots
		for _, d := range old {
			if r, err := trust.Parse(d); err == nil {
				byVersion[r.Version()] = d
			}
		}
	}
	for _, d := range roots {
		if r, err := trust.Parse(d); err == nil && r.Version() <= next.Version() {
			byVersion[r.Version()] = d
		}
	}
	byVersion[next.Version()] = next.Bytes()
	var chain []json.RawMessage
	for v := int64(1); v <= next.Version(); v++ {
		if d, ok := byVersion[v]; ok {
			chain = append(chain, d)
		}
	}
	b, err := json.Marshal(chain)
	if err != nil {
		return fmt.Errorf("save trusted root chain: %w", err)
	}
	if err := t.ns.Set([]byte(keyTrustChain), b); err != nil {
		return fmt.Errorf("save trusted root chain: %w", err)
	}
	return nil
}

// desiredVerdict is what the agent makes of a desired state.
type desiredVerdict int

const (
	// verdictAct: valid, with a rev above the last acted on.
	verdictAct desiredVerdict = iota
	// verdictFresh: valid, the rev already acted on, signed again (a refresh).
	verdictFresh
	// verdictIgnore: valid, the rev already acted on, not newer than what was seen.
	verdictIgnore
	// verdictRefuse: refused (reason says why).
	verdictRefuse
)

// check verifies a decoded desired state that names this device: the root of trust's own
// expiry (TUF: nothing new is verified under an expired root), the signature against the online
// keys, the expiry against now, the rev against the last acted on. It changes nothing.
func (t *trustStore) check(d wire.Desired, now time.Time) (desiredVerdict, string, error) {
	if err := t.rootExpiry(now); err != nil {
		return verdictRefuse, ReasonRootExpired, err
	}
	if err := d.Verify(t.ring()); err != nil {
		reason := ReasonBadSignature
		switch {
		case errors.Is(err, artifact.ErrUnsigned):
			reason = ReasonUnsigned
		case errors.Is(err, artifact.ErrUnknownKey):
			reason = ReasonUnknownKey
		}
		return verdictRefuse, reason, err
	}
	if d.Expires <= now.UnixMilli() {
		return verdictRefuse, ReasonExpired, fmt.Errorf("desired rev %d expired at %s", d.Rev, time.UnixMilli(d.Expires).UTC().Format(time.RFC3339))
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case d.Rev < t.lastRev:
		return verdictRefuse, ReasonReplayed, fmt.Errorf("desired rev %d is below rev %d, acted on already", d.Rev, t.lastRev)
	case d.Rev == t.lastRev && d.IssuedAt > t.issued:
		return verdictFresh, "", nil
	case d.Rev == t.lastRev:
		return verdictIgnore, "", nil
	}
	return verdictAct, "", nil
}

// seen records a valid desired state: it is the newest the device heard.
func (t *trustStore) seen(d wire.Desired) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if d.IssuedAt >= t.issued {
		t.issued, t.expires = d.IssuedAt, d.Expires
	}
}

// revoke adds refs ("NAME@VERSION") to the revocation list and persists it when it grew.
func (t *trustStore) revoke(refs []string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	grew := false
	for _, r := range refs {
		if !slices.Contains(t.revoked, r) {
			t.revoked, grew = append(t.revoked, r), true
		}
	}
	if !grew {
		return nil
	}
	if len(t.revoked) > maxRevoked {
		t.revoked = t.revoked[len(t.revoked)-maxRevoked:]
	}
	b, _ := json.Marshal(t.revoked)
	if err := t.ns.Set([]byte(keyRevoked), b); err != nil {
		return fmt.Errorf("save revocation list: %w", err)
	}
	return nil
}

// isRevoked reports whether name@version was withdrawn.
func (t *trustStore) isRevoked(name string, version int) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Contains(t.revoked, wire.VersionRef(name, version))
}

// actedOn records the rev the agent acted on.
func (t *trustStore) actedOn(rev uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.lastRev = rev
}

// stale reports whether the last valid desired state expired before now without a newer one
// (false before the first one).
func (t *trustStore) stale(now time.Time) (stale bool, expires int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.expires > 0 && now.UnixMilli() >= t.expires, t.expires
}

// register exports the trust gauges.
func (t *trustStore) register(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: MetricDesiredExpires,
			Help: "When the last valid desired state expires, Unix seconds (0: none yet)."}, func() float64 {
			_, e := t.stale(time.Now())
			return float64(e) / 1000
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: MetricDesiredStale,
			Help: "1 while no valid desired state was heard for longer than the last one's expiry (frozen or cut-off feed)."}, func() float64 {
			if s, _ := t.stale(time.Now()); s {
				return 1
			}
			return 0
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: MetricTrustRoot,
			Help: "Version of the root of trust the agent holds (0: a fixed trusted_keys set)."}, func() float64 {
			return float64(t.rootVersion())
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: MetricTrustRootExpires,
			Help: "When the root of trust the agent holds expires, Unix seconds (0: a fixed trusted_keys set)."}, func() float64 {
			if e := t.rootExpires(); !e.IsZero() {
				return float64(e.Unix())
			}
			return 0
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: MetricTrustRootExpired,
			Help: "1 while the root of trust the agent holds has expired: desired states are refused until a renewed root arrives."}, func() float64 {
			if t.rootExpiry(time.Now()) != nil {
				return 1
			}
			return 0
		}),
	} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("register agent trust metrics: %w", err)
		}
	}
	return nil
}
