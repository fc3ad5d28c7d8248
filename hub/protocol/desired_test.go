package protocol

import (
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/driftline/driftline/hub/command"
	"github.com/driftline/driftline/hub/keys"
	"github.com/driftline/driftline/hub/state"
	"github.com/driftline/driftline/hub/state/statetest"
	"github.com/driftline/driftline/internal/testhelp"
	"github.com/driftline/driftline/shared/wire"
)

// recorder is a Transport that records the topics published to.
type recorder struct {
	mu       sync.Mutex
	topics   []string
	payloads map[string][]byte // topic -> last payload
}

func (r *recorder) Publish(topic string, p []byte, _ bool, _ byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.topics = append(r.topics, topic)
	if r.payloads == nil {
		r.payloads = map[string][]byte{}
	}
	r.payloads[topic] = p
	return nil
}

func (r *recorder) last(topic string) []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.payloads[topic]
}

func (r *recorder) Subscribe(string, func(string, []byte)) error { return nil }

func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	t := r.topics
	r.topics = nil
	return t
}

// TestDesiredRepairPass: the first pass publishes every device's desired state, a repeated pass
// publishes nothing new, and the periodic repair pass publishes again only the devices whose
// agents have not reported acting on their revision.
func TestDesiredRepairPass(t *testing.T) {
	st := statetest.New(t)
	st.ApprovedModel(t, "m", 1)
	for _, id := range []string{"acked", "behind"} {
		st.Must(t, command.TypeDeviceCreate, state.DeviceCreate{ID: id, TokenHash: "h-" + id})
		st.Must(t, command.TypeDeviceDesiredSet, state.DeviceDesiredSet{ID: id, Model: "m", Version: 1})
	}
	acked, err := st.Reader().Device("acked")
	if err != nil {
		t.Fatal(err)
	}
	st.Must(t, command.TypeDeviceTelemetry, state.DeviceTelemetry{Devices: []state.DeviceObservation{
		{ID: "acked", Reported: &state.Reported{Rev: acked.DesiredRev}},
	}})

	setTrust(t, st)

	tr := &recorder{}
	s := &Service{cfg: Config{Transport: tr, Reader: st.Reader(), Topics: wire.Default(), Keys: &keys.Source{R: st.Reader()}},
		log: slog.New(slog.NewTextHandler(io.Discard, nil)), m: newMetrics(prometheus.NewRegistry())}
	p := newDesiredPublisher(s)
	topics := wire.Default()

	p.publishAll(false)
	if got := tr.take(); len(got) != 2 {
		t.Fatalf("first pass published %v, want both devices", got)
	}
	p.publishAll(false)
	if got := tr.take(); len(got) != 0 {
		t.Fatalf("second pass published %v, want nothing", got)
	}
	p.publishAll(true)
	if got := tr.take(); len(got) != 1 || got[0] != topics.Desired("behind") {
		t.Fatalf("repair pass published %v, want only %s", got, topics.Desired("behind"))
	}
}

// TestDesiredSignedRefreshedRotated: a published desired state verifies against the current
// root's online keys and expires after the TTL; once half the TTL passed the next pass signs it
// again (same rev, later issue time); after a key rotation every device's desired state is
// signed by the new key and carries the new root.
func TestDesiredSignedRefreshedRotated(t *testing.T) {
	st := statetest.New(t)
	st.ApprovedModel(t, "m", 1)
	st.Must(t, command.TypeDeviceCreate, state.DeviceCreate{ID: "d1", TokenHash: "h-d1"})
	st.Must(t, command.TypeDeviceDesiredSet, state.DeviceDesiredSet{ID: "d1", Model: "m", Version: 1})
	_, online, _ := ed25519.GenerateKey(rand.Reader)
	_, rootKey, _ := ed25519.GenerateKey(rand.Reader)
	set, err := keys.Bootstrap(rootKey, online, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	st.Must(t, command.TypeTrustSet, set)
	src := &keys.Source{R: st.Reader()}

	tr := &recorder{}
	const ttl = 200 * time.Millisecond
	s := &Service{cfg: Config{Transport: tr, Reader: st.Reader(), Topics: wire.Default(), Keys: src, DesiredTTL: ttl},
		log: slog.New(slog.NewTextHandler(io.Discard, nil)), m: newMetrics(prometheus.NewRegistry())}
	p := newDesiredPublisher(s)
	topic := wire.Default().Desired("d1")
	decode := func() wire.Desired {
		t.Helper()
		d, err := wire.DecodeDesired(tr.last(topic))
		if err != nil {
			t.Fatal(err)
		}
		return d
	}

	p.publishAll(false)
	first := decode()
	cur, _ := src.Current()
	if err := first.Verify(cur.Online); err != nil {
		t.Fatalf("published desired does not verify: %v", err)
	}
	if got := first.Expires - first.IssuedAt; got != ttl.Milliseconds() {
		t.Fatalf("valid for %d ms, want %d", got, ttl.Milliseconds())
	}
	if err := cur.Online.VerifyApproval(first.Models[0].Approval(), first.Models[0].ApprovalSignature); err != nil {
		t.Fatalf("approval signature does not verify: %v", err)
	}
	tr.take()
	testhelp.WaitFor(t, 5*time.Second, "a refresh", func() bool {
		p.publishAll(false)
		return len(tr.take()) == 1
	})
	if again := decode(); again.Rev != first.Rev || again.IssuedAt <= first.IssuedAt {
		t.Fatalf("refresh: rev %d issued %d, want rev %d issued after %d", again.Rev, again.IssuedAt, first.Rev, first.IssuedAt)
	}

	roots, _ := st.Reader().TrustRoots()
	tset, _ := st.Reader().Trust()
	rot, err := keys.Rotate(tset, roots[len(roots)-1], rootKey, nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	st.Must(t, command.TypeTrustSet, rot)
	p.publishAll(false)
	after := decode()
	if after.Signature.KeyID != rot.Signer || len(after.Roots) != 1 {
		t.Fatalf("after rotation: signed by %s with %d roots, want %s and root v2", after.Signature.KeyID, len(after.Roots), rot.Signer)
	}

	// Deprecating m@1 puts it on the signed revocation list of every desired state naming m.
	st.Must(t, command.TypeModelVersionDeprecate, state.ModelVersionDeprecate{Model: "m", Version: 1})
	d, err := st.Reader().Device("d1")
	if err != nil {
		t.Fatal(err)
	}
	cur, _ = src.Current()
	msg, err := BuildDesired(st.Reader(), d, cur, time.Now(), ttl)
	if err != nil {
		t.Fatal(err)
	}
	if len(msg.Revoked) != 1 || msg.Revoked[0] != "m@1" || msg.Verify(cur.Online) != nil {
		t.Fatalf("after deprecation: revoked %v, verify %v", msg.Revoked, msg.Verify(cur.Online))
	}
}

// setTrust stores in st a trust set bootstrapped from a new root key and online key.
func setTrust(t testing.TB, st *statetest.Store) {
	t.Helper()
	_, online, _ := ed25519.GenerateKey(rand.Reader)
	_, rootKey, _ := ed25519.GenerateKey(rand.Reader)
	set, err := keys.Bootstrap(rootKey, online, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	st.Must(t, command.TypeTrustSet, set)
}

// overlapTransport is a Transport whose Publish waits (up to 200 ms) for need publishes (at
// least 2) to be in flight beside it, and records the most publishes seen in flight at once.
type overlapTransport struct {
	need     int
	mu       sync.Mutex
	inflight int
	most     int
	n        int
}

func (o *overlapTransport) Publish(string, []byte, bool, byte) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.inflight++
	o.n++
	o.most = max(o.most, o.inflight)
	deadline := time.Now().Add(200 * time.Millisecond)
	for o.inflight < max(o.need, 2) && time.Now().Before(deadline) {
		o.mu.Unlock()
		time.Sleep(time.Millisecond) // polling the count: the test's own stand-in for a slow store
		o.mu.Lock()
	}
	o.inflight--
	return nil
}

func (o *overlapTransport) Subscribe(string, func(string, []byte)) error { return nil }

// TestDesiredWaveStartPublishedConcurrently: the desired states of a wave start (one batch of
// changes) are published several at a time, not one after another: each publish waits on the
// state store's reads and the broker's retained store, and 9,000 one at a time took 85 s to
// reach a 10,000-agent fleet's wave 3 with the hub's CPU mostly idle.
func TestDesiredWaveStartPublishedConcurrently(t *testing.T) {
	st := statetest.New(t)
	st.ApprovedModel(t, "m", 1)
	var ids []string
	for i := range 16 {
		id := fmt.Sprintf("d%02d", i)
		ids = append(ids, id)
		st.Must(t, command.TypeDeviceCreate, state.DeviceCreate{ID: id, TokenHash: "h-" + id})
		st.Must(t, command.TypeDeviceDesiredSet, state.DeviceDesiredSet{ID: id, Model: "m", Version: 1})
	}
	setTrust(t, st)
	tr := &overlapTransport{}
	s := &Service{cfg: Config{Transport: tr, Reader: st.Reader(), Topics: wire.Default(), Keys: &keys.Source{R: st.Reader()}},
		log: slog.New(slog.NewTextHandler(io.Discard, nil)), m: newMetrics(prometheus.NewRegistry())}
	p := newDesiredPublisher(s)
	p.publishIDs(ids)
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if tr.n != len(ids) {
		t.Fatalf("%d publishes for %d devices", tr.n, len(ids))
	}
	if tr.most < 2 {
		t.Fatalf("at most %d desired publish in flight at once; want several", tr.most)
	}
	// Each device once: a second batch of the same devices publishes nothing new.
	tr.n = 0
	tr.mu.Unlock()
	p.publishIDs(ids)
	tr.mu.Lock()
	if tr.n != 0 {
		t.Fatalf("the same revisions published again: %d", tr.n)
	}
}
