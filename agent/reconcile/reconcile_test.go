package reconcile

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/driftline/driftline/agent/chunkcache"
	"github.com/driftline/driftline/agent/config"
	"github.com/driftline/driftline/agent/devicedb"
	"github.com/driftline/driftline/agent/modelstore"
	"github.com/driftline/driftline/agent/msgq"
	"github.com/driftline/driftline/shared/artifact"
	"github.com/driftline/driftline/shared/wire"
)

// hubConn is a Conn whose other end answers fetch requests from a table of objects, as the
// hub does; digests in silent get no answer at all.
type hubConn struct {
	t       testing.TB
	desired chan struct{}
	frames  *msgq.Queue

	mu      sync.Mutex
	waiting []byte
	objects map[string][]byte
	silent  map[string]bool
	// asked holds each fetch request's digests, in order.
	asked [][]string
}

func newHubConn(t testing.TB) *hubConn {
	return &hubConn{t: t, desired: make(chan struct{}, 1), frames: msgq.New(1024),
		objects: map[string][]byte{}, silent: map[string]bool{}}
}

func (c *hubConn) DesiredSignal() chan struct{} { return c.desired }
func (c *hubConn) Frames() *msgq.Queue          { return c.frames }
func (c *hubConn) Gen() uint64                  { return 1 }
func (c *hubConn) Up() bool                     { return true }

// The table hub has no shared chunk topic: pulls fetch on the device's own (the agent's tests
// run the shared topic against a real hub).
func (c *hubConn) SubscribeShared(context.Context, string) *SharedSub { return nil }
func (c *hubConn) UnsubscribeShared(*SharedSub)                       {}
func (c *hubConn) SharedFrames() *msgq.Queue                          { return nil }

func (c *hubConn) PeekDesired() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.waiting
}

func (c *hubConn) TakeDesired() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	b := c.waiting
	c.waiting = nil
	return b
}

func (c *hubConn) Send(_ string, payload []byte, _ byte) error {
	req, err := wire.DecodeFetchRequest(payload)
	if err != nil {
		c.t.Errorf("bad fetch request: %v", err)
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.asked = append(c.asked, append([]string(nil), req.Digests...))
	for _, d := range req.Digests {
		if c.silent[d] {
			continue
		}
		var frames [][]byte
		if obj, ok := c.objects[d]; ok {
			if frames, err = wire.DataFrames(req.RequestID, obj); err != nil {
				c.t.Errorf("frame %s: %v", d, err)
				return nil
			}
		} else {
			sum, _ := artifact.ParseDigest(d)
			f, _ := wire.NotFoundFrame(req.RequestID, sum)
			frames = [][]byte{f}
		}
		for _, f := range frames {
			if !c.frames.Push(f) {
				c.t.Errorf("frame queue full")
			}
		}
	}
	return nil
}

// version splits data into chunks the hub holds and returns the desired entry of
// name@version, approved with key.
func (c *hubConn) version(key ed25519.PrivateKey, name string, version int, data []byte) (wire.DesiredModel, artifact.Manifest) {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	man, err := artifact.Split(bytes.NewReader(data), func(ch artifact.Chunk) error {
		c.objects[ch.Digest] = bytes.Clone(ch.Data)
		return nil
	})
	if err != nil {
		c.t.Fatal(err)
	}
	mb, err := man.Canonical()
	if err != nil {
		c.t.Fatal(err)
	}
	md := artifact.DigestOf(mb)
	c.objects[md] = mb
	e := wire.DesiredModel{Name: name, Version: version, ManifestDigest: md, Size: int64(len(data))}
	e.ApprovalSignature = artifact.SignApproval(key, e.Approval())
	return e, man
}

// keyTrust verifies approvals against one key and takes every desired state; the agent's
// root of trust (signatures of desired states, expiry, replays) is tested in package agent.
type keyTrust struct {
	ring    artifact.KeyRing
	revoked []string
	acted   uint64
}

func (k *keyTrust) Desired(b []byte) (wire.Desired, bool) {
	d, err := wire.DecodeDesired(b)
	return d, err == nil && d.Rev > k.acted
}
func (k *keyTrust) Preempts(b []byte, rev uint64) bool {
	d, err := wire.DecodeDesired(b)
	return err == nil && d.Rev > rev
}
func (k *keyTrust) Approval(m wire.DesiredModel) error {
	return k.ring.VerifyApproval(m.Approval(), m.ApprovalSignature)
}
func (k *keyTrust) Revoked(name string, version int) bool {
	return slices.Contains(k.revoked, wire.VersionRef(name, version))
}
func (k *keyTrust) ActedOn(rev uint64) { k.acted = rev }

type rig struct {
	rc    *Reconciler
	conn  *hubConn
	trust *keyTrust
	key   ed25519.PrivateKey
}

func newRig(t *testing.T, fetch config.Fetch) *rig {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	db, err := devicedb.OpenInMemory()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	ns := db.Root()
	log := slog.New(slog.DiscardHandler)
	dir := t.TempDir()
	store, err := modelstore.Open(ns.Sub("models"), modelstore.Options{Dir: dir, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	cache, err := chunkcache.Open(ns.Sub("chunks"), chunkcache.Options{MaxBytes: 1 << 20, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{conn: newHubConn(t), trust: &keyTrust{ring: artifact.NewKeyRing(pub)}, key: priv}
	r.rc = New(Config{
		DeviceID: "dev", Topics: wire.Default(), Fetch: fetch, Logger: log,
		Metrics: Metrics{
			FetchedChunks: prometheus.NewCounter(prometheus.CounterOpts{Name: "c"}),
			ChunksReused:  prometheus.NewCounter(prometheus.CounterOpts{Name: "r"}),
			Activations:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "a"}, []string{"result"}),
			Rejected:      prometheus.NewCounterVec(prometheus.CounterOpts{Name: "j"}, []string{"reason"}),
		},
		Conn: r.conn, Trust: r.trust, Store: store, Cache: cache, Assets: ns.Sub("assets"), Records: ns.Sub("agent"),
	})
	if err := r.rc.Load(nil); err != nil {
		t.Fatal(err)
	}
	return r
}

func desired(t *testing.T, rev uint64, models ...wire.DesiredModel) []byte {
	t.Helper()
	b, err := wire.Encode(wire.Desired{Header: wire.Header{DeviceID: "dev", TS: time.Now().UnixMilli()}, Rev: rev, Models: models})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestOutcomes: each model of a revision comes back with its outcome instead of a flag on the
// reconciler: a version pulled and activated is active; a refused approval, a revoked version
// and a digest the hub does not have are failed for good; a pull that stalls is to be retried,
// and then the revision is not recorded as acted on.
func TestOutcomes(t *testing.T) {
	fetch := config.Default().Fetch
	fetch.Stall = config.Duration(300 * time.Millisecond)
	fetch.Timeout = config.Duration(100 * time.Millisecond)
	r := newRig(t, fetch)
	ctx := context.Background()

	good, _ := r.conn.version(r.key, "good", 1, bytes.Repeat([]byte("model bytes "), 20000))
	forged, _ := r.conn.version(r.key, "forged", 1, []byte("forged model"))
	forged.Size++ // the approval no longer matches
	revoked, _ := r.conn.version(r.key, "revoked", 3, []byte("withdrawn model"))
	r.trust.revoked = []string{wire.VersionRef("revoked", 3)}
	missing := wire.DesiredModel{Name: "missing", Version: 1, ManifestDigest: artifact.DigestOf([]byte("nowhere"))}
	missing.ApprovalSignature = artifact.SignApproval(r.key, missing.Approval())

	rev, err := r.rc.handleDesired(ctx, desired(t, 1, good, forged, revoked, missing))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Outcome{"good": OutcomeActive, "forged": OutcomeFailed, "revoked": OutcomeFailed, "missing": OutcomeFailed}
	for n, o := range want {
		if rev.Models[n] != o {
			t.Errorf("%s: outcome %v, want %v", n, rev.Models[n], o)
		}
	}
	if rev.RetryAfter() || r.trust.acted != 1 {
		t.Fatalf("revision 1: retry %v, acted on %d; want recorded as acted on", rev.RetryAfter(), r.trust.acted)
	}
	ms, err := r.rc.ActiveModels()
	if err != nil || len(ms) != 1 || ms[0].Name != "good" || ms[0].Version != 1 {
		t.Fatalf("ActiveModels = %+v %v", ms, err)
	}
	if b, err := os.ReadFile(r.rc.store.CurrentPath("good")); err != nil || len(b) != 240000 {
		t.Fatalf("current model: %d bytes, %v", len(b), err)
	}

	// A version whose chunks never come: the pull stalls, which may pass.
	slow, man := r.conn.version(r.key, "slow", 1, bytes.Repeat([]byte("slow bytes "), 30000))
	r.conn.mu.Lock()
	r.conn.silent[man.Chunks[len(man.Chunks)-1].Digest] = true
	r.conn.mu.Unlock()
	rev, err = r.rc.handleDesired(ctx, desired(t, 2, good, slow))
	if err != nil {
		t.Fatal(err)
	}
	if rev.Models["good"] != OutcomeActive || rev.Models["slow"] != OutcomeRetry || !rev.RetryAfter() {
		t.Fatalf("revision 2: outcomes %v, retry %v", rev.Models, rev.RetryAfter())
	}
	if r.trust.acted != 1 {
		t.Fatalf("revision 2 recorded as acted on (%d) with a model to retry", r.trust.acted)
	}
	r.rc.mu.Lock()
	lastErr := r.rc.models["slow"].LastError
	r.rc.mu.Unlock()
	if !strings.Contains(lastErr, ErrStalled.Error()) {
		t.Fatalf("slow: last error %q, want a stall", lastErr)
	}

	// The chunk comes now: the same revision, tried again, completes.
	r.conn.mu.Lock()
	clear(r.conn.silent)
	r.conn.mu.Unlock()
	rev, err = r.rc.handleDesired(ctx, desired(t, 2, good, slow))
	if err != nil || rev.Models["slow"] != OutcomeActive || rev.RetryAfter() || r.trust.acted != 2 {
		t.Fatalf("revision 2 again: outcomes %v, retry %v, acted on %d, %v", rev.Models, rev.RetryAfter(), r.trust.acted, err)
	}
}
