package agent_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/driftline/driftline/shared/artifact"
	"github.com/driftline/driftline/shared/wire"
)

// broker is a plain mochi broker that lets everyone in: for tests of the agent alone, where
// the test itself plays the hub.
type broker struct {
	t    testing.TB
	s    *mqtt.Server
	port int
	once sync.Once
}

// stop closes the broker (idempotent).
func (b *broker) stop() { b.once.Do(func() { b.s.Close() }) }

// startBroker starts a broker on port: 0 listens on ":0" (a test that restarts the broker on the
// same port passes freeport.Port instead, a port outside the kernel's ephemeral range). setup runs
// before it listens (inline subscriptions that must see the first message).
func startBroker(t testing.TB, port int, setup ...func(s *mqtt.Server)) *broker {
	t.Helper()
	s := mqtt.New(&mqtt.Options{InlineClient: true, Logger: slog.New(slog.DiscardHandler)})
	if err := s.AddHook(new(auth.AllowHook), nil); err != nil {
		t.Fatal(err)
	}
	for _, f := range setup {
		f(s)
	}
	var err error
	for i := 0; i < 50; i++ { // the port may still be held by a broker just closed
		ln := listeners.NewTCP(listeners.Config{ID: "t", Address: fmt.Sprintf("127.0.0.1:%d", port)})
		if err = s.AddListener(ln); err == nil {
			_, p, _ := net.SplitHostPort(ln.Address())
			port, _ = strconv.Atoi(p)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Serve() }()
	b := &broker{t: t, s: s, port: port}
	t.Cleanup(b.stop)
	return b
}

func (b *broker) url() string { return fmt.Sprintf("tcp://127.0.0.1:%d", b.port) }

// fakeHub answers one device's fetch requests from a table of objects and publishes its desired
// state, signed with its own key. tamper, when set, may answer a digest itself.
type fakeHub struct {
	t      testing.TB
	b      *broker
	topics wire.Topics
	id     string
	key    ed25519.PrivateKey
	rev    atomic.Uint64

	mu       sync.Mutex
	delay    time.Duration // before each frame: slows a pull down
	reverse  bool          // answer a request's digests, and each object's frames, last first
	objects  map[string][]byte
	tamper   func(reqID, digest string) (frames [][]byte, handled bool)
	requests []wire.FetchRequest
}

func newFakeHub(t testing.TB, b *broker, id string) *fakeHub {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	h := &fakeHub{t: t, b: b, topics: wire.Default(), id: id, key: priv, objects: map[string][]byte{}}
	err = b.s.Subscribe(h.topics.Fetch(id), 1, func(_ *mqtt.Client, _ packets.Subscription, pk packets.Packet) {
		req, err := wire.DecodeFetchRequest(pk.Payload)
		if err != nil {
			t.Errorf("agent sent a bad fetch request: %v", err)
			return
		}
		go h.serve(req) // not on the publisher's goroutine
	})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func (h *fakeHub) publicKey() string {
	return artifact.PublicKeyBase64(h.key.Public().(ed25519.PublicKey))
}

func (h *fakeHub) serve(req wire.FetchRequest) {
	h.mu.Lock()
	h.requests = append(h.requests, req)
	tamper, reverse := h.tamper, h.reverse
	h.mu.Unlock()
	digests := req.Digests
	if reverse {
		digests = slices.Clone(digests)
		slices.Reverse(digests)
	}
	for _, d := range digests {
		if tamper != nil {
			if frames, ok := tamper(req.RequestID, d); ok {
				for _, f := range frames {
					h.publish(h.topics.Chunk(h.id), f, false)
				}
				continue
			}
		}
		h.mu.Lock()
		obj, ok := h.objects[d]
		h.mu.Unlock()
		var frames [][]byte
		if ok {
			var err error
			if frames, err = wire.DataFrames(req.RequestID, obj); err != nil {
				h.t.Errorf("frame %s: %v", d, err)
				return
			}
		} else {
			sum, _ := artifact.ParseDigest(d)
			f, _ := wire.NotFoundFrame(req.RequestID, sum)
			frames = [][]byte{f}
		}
		if reverse {
			slices.Reverse(frames)
		}
		for _, f := range frames {
			h.mu.Lock()
			delay := h.delay
			h.mu.Unlock()
			time.Sleep(delay)
			h.publish(h.topics.Chunk(h.id), f, false)
		}
	}
}

// requested returns the distinct digests asked for so far.
func (h *fakeHub) requested() map[string]int {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := map[string]int{}
	for _, r := range h.requests {
		for _, d := range r.Digests {
			out[d]++
		}
	}
	return out
}

// successor returns a fake hub on broker b with the same key, objects and revision counter:
// the same hub after its broker restarted.
func (h *fakeHub) successor(b *broker) *fakeHub {
	n := newFakeHub(h.t, b, h.id)
	n.key = h.key
	n.rev.Store(h.rev.Load())
	h.mu.Lock()
	for d, o := range h.objects {
		n.objects[d] = o
	}
	h.mu.Unlock()
	return n
}

func (h *fakeHub) publish(topic string, payload []byte, retain bool) {
	if err := h.b.s.Publish(topic, payload, retain, 1); err != nil {
		h.t.Errorf("publish %s: %v", topic, err)
	}
}

// model is one version the fake hub serves.
type model struct {
	data           []byte
	manifest       artifact.Manifest
	manifestBytes  []byte
	manifestDigest string
}

// addModel splits data into chunks and stores them and the manifest.
func (h *fakeHub) addModel(data []byte) model {
	h.t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	man, err := artifact.Split(bytes.NewReader(data), func(c artifact.Chunk) error {
		h.objects[c.Digest] = bytes.Clone(c.Data)
		return nil
	})
	if err != nil {
		h.t.Fatal(err)
	}
	mb, err := man.Canonical()
	if err != nil {
		h.t.Fatal(err)
	}
	md := artifact.DigestOf(mb)
	h.objects[md] = mb
	return model{data: data, manifest: man, manifestBytes: mb, manifestDigest: md}
}

// addObject stores a contract or profile and returns its digest.
func (h *fakeHub) addObject(b []byte) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	d := artifact.DigestOf(b)
	h.objects[d] = b
	return d
}

// entry is the desired entry for m as name@version, its approval signed by the hub's key.
func (h *fakeHub) entry(name string, version int, m model) wire.DesiredModel {
	e := wire.DesiredModel{Name: name, Version: version, ManifestDigest: m.manifestDigest, Size: int64(len(m.data))}
	return h.approve(e)
}

// approve signs e's approval (after its digests were set) with the hub's key.
func (h *fakeHub) approve(e wire.DesiredModel) wire.DesiredModel {
	e.ApprovalSignature = artifact.SignApproval(h.key, e.Approval())
	return e
}

// desire publishes a retained desired state with the next revision, signed by the hub's key
// and valid for an hour.
func (h *fakeHub) desire(models ...wire.DesiredModel) uint64 {
	h.t.Helper()
	rev := h.rev.Add(1)
	h.publish(h.topics.Desired(h.id), h.signedDesired(rev, time.Hour, models...), true)
	return rev
}

// desireRevoking is desire with a revocation list ("NAME@VERSION").
func (h *fakeHub) desireRevoking(revoked []string, models ...wire.DesiredModel) uint64 {
	h.t.Helper()
	rev := h.rev.Add(1)
	h.publish(h.topics.Desired(h.id), h.signedDesiredRevoking(rev, time.Hour, revoked, models...), true)
	return rev
}

// signedDesired encodes a desired state for rev, signed by the hub's key, valid for ttl.
func (h *fakeHub) signedDesired(rev uint64, ttl time.Duration, models ...wire.DesiredModel) []byte {
	h.t.Helper()
	return h.signedDesiredRevoking(rev, ttl, nil, models...)
}

func (h *fakeHub) signedDesiredRevoking(rev uint64, ttl time.Duration, revoked []string, models ...wire.DesiredModel) []byte {
	h.t.Helper()
	now := time.Now()
	d := wire.Desired{Header: wire.Header{DeviceID: h.id, TS: now.UnixMilli()}, Rev: rev, Models: models,
		IssuedAt: now.UnixMilli(), Expires: now.Add(ttl).UnixMilli(), Revoked: revoked}
	d.Sign(h.key)
	b, err := wire.Encode(d)
	if err != nil {
		h.t.Fatal(err)
	}
	return b
}

// reported subscribes to the device's reported state; latest returns the last one seen.
func (h *fakeHub) watchReported() func() wire.Reported {
	var mu sync.Mutex
	var last wire.Reported
	err := h.b.s.Subscribe(h.topics.Reported(h.id), 2, func(_ *mqtt.Client, _ packets.Subscription, pk packets.Packet) {
		r, err := wire.DecodeReported(pk.Payload)
		if err != nil {
			h.t.Errorf("agent sent a bad reported state: %v", err)
			return
		}
		mu.Lock()
		if r.TS >= last.TS {
			last = r
		}
		mu.Unlock()
	})
	if err != nil {
		h.t.Fatal(err)
	}
	return func() wire.Reported {
		mu.Lock()
		defer mu.Unlock()
		return last
	}
}

// watchStates records, per model, the states the agent reports in order (consecutive repeats
// folded) and the largest bytes_total seen while downloading.
func (h *fakeHub) watchStates() (states func(name string) []wire.State, bytesTotal func(name string) int64) {
	var mu sync.Mutex
	seen := map[string][]wire.State{}
	total := map[string]int64{}
	err := h.b.s.Subscribe(h.topics.Reported(h.id), 3, func(_ *mqtt.Client, _ packets.Subscription, pk packets.Packet) {
		r, err := wire.DecodeReported(pk.Payload)
		if err != nil {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		for n, m := range r.Models {
			if s := seen[n]; len(s) == 0 || s[len(s)-1] != m.State {
				seen[n] = append(s, m.State)
			}
			if m.State == wire.StateDownloading {
				total[n] = max(total[n], m.BytesTotal)
			}
		}
	})
	if err != nil {
		h.t.Fatal(err)
	}
	return func(name string) []wire.State {
			mu.Lock()
			defer mu.Unlock()
			return append([]wire.State(nil), seen[name]...)
		}, func(name string) int64 {
			mu.Lock()
			defer mu.Unlock()
			return total[name]
		}
}
