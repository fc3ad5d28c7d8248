package reconcile

import (
	"bytes"
	"context"
	"log/slog"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/driftline/driftline/agent/config"
	"github.com/driftline/driftline/agent/msgq"
	"github.com/driftline/driftline/shared/artifact"
	"github.com/driftline/driftline/shared/wire"
)

// sharedConn is a Conn whose hub answers every request naming the shared subscription on the
// shared topic (one frame every gap, like a broker slow to multiply a wave's frames), and
// records the requests.
type sharedConn struct {
	t      testing.TB
	frames *msgq.Queue
	shared *msgq.Queue
	gap    time.Duration
	chunks map[string][]byte

	mu   sync.Mutex
	reqs []wire.FetchRequest
	wg   sync.WaitGroup
	stop chan struct{}
}

func newSharedConn(t testing.TB, chunks map[string][]byte, gap time.Duration) *sharedConn {
	c := &sharedConn{t: t, frames: msgq.New(1024), shared: msgq.New(1024), gap: gap, chunks: chunks, stop: make(chan struct{})}
	t.Cleanup(func() { close(c.stop); c.wg.Wait() })
	return c
}

func (c *sharedConn) DesiredSignal() chan struct{}                       { return nil }
func (c *sharedConn) Frames() *msgq.Queue                                { return c.frames }
func (c *sharedConn) SharedFrames() *msgq.Queue                          { return c.shared }
func (c *sharedConn) Gen() uint64                                        { return 1 }
func (c *sharedConn) Up() bool                                           { return true }
func (c *sharedConn) PeekDesired() []byte                                { return nil }
func (c *sharedConn) TakeDesired() []byte                                { return nil }
func (c *sharedConn) SubscribeShared(context.Context, string) *SharedSub { return nil }
func (c *sharedConn) UnsubscribeShared(*SharedSub)                       {}

// Send answers a shared request on the shared topic, paced, and any other on the device's
// own topic at once.
func (c *sharedConn) Send(_ string, payload []byte, _ byte) error {
	req, err := wire.DecodeFetchRequest(payload)
	if err != nil {
		c.t.Errorf("bad fetch request: %v", err)
		return nil
	}
	c.mu.Lock()
	c.reqs = append(c.reqs, req)
	c.mu.Unlock()
	id, out, gap := req.RequestID, c.frames, time.Duration(0)
	if req.Shared != "" {
		id, out, gap = "shared", c.shared, c.gap
	}
	var frames [][]byte
	for _, d := range req.Digests {
		fs, err := wire.DataFrames(id, c.chunks[d])
		if err != nil || len(fs) != 1 {
			c.t.Errorf("frame %s: %d frames, %v", d, len(fs), err)
			return nil
		}
		frames = append(frames, fs[0])
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		for _, f := range frames {
			select { // the broker's pace
			case <-time.After(gap):
			case <-c.stop:
				return
			}
			if !out.Push(f) {
				c.t.Errorf("frame queue full")
			}
		}
	}()
	return nil
}

// requests returns the requests sent, split by whether they named the shared subscription.
func (c *sharedConn) requests() (shared, own int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range c.reqs {
		if r.Shared != "" {
			shared++
		} else {
			own++
		}
	}
	return shared, own
}

// chunksOf splits data and returns its digests in order and the chunks by digest.
func chunksOf(t *testing.T, data []byte) ([]string, map[string][]byte) {
	t.Helper()
	byDigest := map[string][]byte{}
	man, err := artifact.Split(bytes.NewReader(data), func(ch artifact.Chunk) error {
		byDigest[ch.Digest] = bytes.Clone(ch.Data)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var ds []string
	for _, c := range man.Chunks {
		ds = append(ds, c.Digest)
	}
	return ds, byDigest
}

// randomBytes returns n incompressible bytes from seed.
func randomBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func testFetcher(conn Conn, fetch config.Fetch) *fetcher {
	return newFetcher(conn, fetch, "dev", wire.Default(), slog.New(slog.DiscardHandler), func(string, string, ...any) {})
}

// TestSharedFramesHoldTheTimeout: a request answered on the shared topic, whose frames come
// slower than the request timeout in all (the broker multiplying them to a wave), is not asked
// again on the device's own topic while they keep coming: no per-device retry, no straggler
// egress for a device that is getting the wave's frames.
func TestSharedFramesHoldTheTimeout(t *testing.T) {
	ds, chunks := chunksOf(t, randomBytes(3, 1<<20))
	if len(ds) < 8 {
		t.Fatalf("%d chunks: the test needs frames coming over several timeouts", len(ds))
	}
	conn := newSharedConn(t, chunks, 80*time.Millisecond)
	fetch := config.Default().Fetch
	fetch.Timeout = config.Duration(300 * time.Millisecond) // the frames take len(ds) x 80 ms
	f := testFetcher(conn, fetch)
	var got sync.Map
	err := f.fetch(context.Background(), kindChunk, ds, func(d string, b []byte) error {
		got.Store(d, bytes.Clone(b))
		return nil
	}, func(string) {}, nil, &SharedSub{Model: "m", ID: "s1", Gen: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range ds {
		if b, ok := got.Load(d); !ok || !bytes.Equal(b.([]byte), chunks[d]) {
			t.Fatalf("chunk %s not stored whole", d)
		}
	}
	shared, own := conn.requests()
	t.Logf("%d chunks over %v: %d shared requests, %d on the device's own topic", len(ds), time.Duration(len(ds))*conn.gap, shared, own)
	if own != 0 {
		t.Fatalf("%d requests asked again on the device's own topic while the shared frames were coming", own)
	}
}

// TestListenWhileWaitingForSlot: a pull whose pull slot is taken (fleet mode: other agents
// hold them all) listens on the shared topic meanwhile: it announces its chunks there, takes
// them as they come, completes without ever holding a slot, and asks nothing on its own topic.
// Once the slot frees, a pull that still misses chunks takes it and asks for the rest.
func TestListenWhileWaitingForSlot(t *testing.T) {
	ds, chunks := chunksOf(t, randomBytes(4, 1<<20))
	conn := newSharedConn(t, chunks, 0)
	f := testFetcher(conn, config.Default().Fetch)
	slots := make(chan struct{}, 1)
	slots <- struct{}{} // held by another pull
	slot := &pullSlot{ch: slots}
	n := 0
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := f.fetch(ctx, kindChunk, ds, func(string, []byte) error { return nil },
		func(string) { n++ }, nil, &SharedSub{Model: "m", ID: "s1", Gen: 1}, slot)
	if err != nil {
		t.Fatalf("pull waiting for a slot: %v (it did not take the shared frames meanwhile)", err)
	}
	if shared, own := conn.requests(); n != len(ds) || own != 0 || shared == 0 || slot.held {
		t.Fatalf("stored %d of %d chunks, %d shared and %d own requests, slot held %v; want all, shared only, no slot", n, len(ds), shared, own, slot.held)
	}

	// The shared topic brings nothing (the hub's publish went out before this device
	// listened and the next is far): once the other pull ends, this one takes the slot and asks
	// on its own topic at its timeout.
	silent := newSharedConn(t, chunks, time.Hour)
	fetch := config.Default().Fetch
	fetch.Timeout = config.Duration(200 * time.Millisecond)
	f = testFetcher(silent, fetch)
	done := make(chan error, 1)
	go func() {
		done <- f.fetch(context.Background(), kindChunk, ds, func(string, []byte) error { return nil },
			func(string) {}, nil, &SharedSub{Model: "m", ID: "s2", Gen: 1}, slot)
	}()
	// Listening, with its slot not yet free: no timeout sends it to its own topic.
	time.Sleep(4 * fetch.Timeout.D()) // a span the test asserts nothing happens in
	if _, own := silent.requests(); own != 0 {
		t.Fatalf("%d requests on the device's own topic before the pull held a slot", own)
	}
	<-slots // the other pull ends
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, own := silent.requests(); own == 0 || !slot.held {
		t.Fatalf("own requests %d, slot held %v; want the rest asked on the device's own topic with the slot", own, slot.held)
	}
	slot.release()
}
