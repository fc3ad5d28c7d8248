package reconcile

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/driftline/driftline/agent/config"
	"github.com/driftline/driftline/shared/wire"
)

// objectKind says what a pull fetches, for rejection reasons and logs.
type objectKind int

const (
	kindChunk objectKind = iota
	kindManifest
	kindAsset // contract or reference profile
)

// fetcher requests objects by digest on the fetch topic and collects the frames the hub
// answers on the chunk topic. One pull runs at a time (Run's goroutine).
//
// Request ids are "PREFIX-SEQ" with a random PREFIX per process, so a frame naming an id this
// process never issued is told apart (ReasonUnknownRequest) from a late answer to a request
// that was retried (used if its digest is still wanted: it is verified by digest anyway).
type fetcher struct {
	conn   Conn
	cfg    config.Fetch
	device string
	topics wire.Topics
	log    *slog.Logger
	reject func(reason, msg string, args ...any)
	prefix string
	seq    uint64
}

func newFetcher(conn Conn, cfg config.Fetch, device string, topics wire.Topics, log *slog.Logger, reject func(reason, msg string, args ...any)) *fetcher {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return &fetcher{conn: conn, cfg: cfg, device: device, topics: topics, log: log, reject: reject, prefix: hex.EncodeToString(b)}
}

// issued reports whether id is one this fetcher sent.
func (f *fetcher) issued(id string) bool {
	p, s, ok := strings.Cut(id, "-")
	if !ok || p != f.prefix {
		return false
	}
	n, err := strconv.ParseUint(s, 10, 64)
	return err == nil && n < f.seq
}

type request struct {
	id       string
	digests  map[string]bool
	deadline time.Time
	// shared says the request named the pull's shared subscription: its chunks may come on the
	// model's shared topic, and its deadline moves on while frames arrive there.
	shared bool
}

// pullState is one fetch call's bookkeeping.
type pullState struct {
	queue    []string                // not yet requested (or to be requested again), in order
	inflight map[string]*request     // by request id
	owner    map[string]string       // digest -> request id
	attempts map[string]int          // digest -> requests sent
	objects  map[string]*wire.Object // multi-part objects being collected
	wanted   map[string]bool
	// verifying holds the digests received whole and handed to the workers. A request leaves
	// inflight once every digest it asked for is received, not verified, so that the next
	// requests go out while the workers catch up; fill stops asking while verifying holds a
	// whole window (Requests x Digests), which bounds the frames held in memory.
	verifying map[string]bool
	gen       uint64
	// shared is the pull's subscription to its model's shared chunk topic (nil: none, or lost
	// with the connection it was made on): first requests name it, retries do not.
	shared *SharedSub
	// slot is the pull slot (fleet mode; nil: none). While the pull does not hold it, it is
	// listening (see listening).
	slot *pullSlot
}

// listening says the pull waits for its pull slot and meanwhile takes what comes on the shared
// topic. It sends only first requests naming shared (none once shared is lost), asks nothing
// again, and neither stalls nor runs out of attempts; taking the slot ends it. A pull without a
// shared subscription takes its slot before it starts (startPull), so never listens.
func (st *pullState) listening() bool { return st.slot.waiting() != nil }

// listenQuiet is how many fetch timeouts a listening pull waits without a chunk from the shared
// topic before it takes a pull slot and asks on its own topic (wire.SharedListenQuiet): more
// than the hub's longest hold of a shared publish (wire.MaxSharedHold, 8 s against 40 s by
// default), so a device of a wave whose devices keep joining for minutes waits for the next
// publish instead of becoming a straggler.
const listenQuiet = wire.SharedListenQuiet

// verifyWorkers decompress, hash and store frames beside the pull's loop, which keeps the
// bookkeeping: on a small device the hashing and the writing are the pull's cost.
const verifyWorkers = 2

// plainBufs recycles the buffers chunks are decompressed into: a pull decompresses every chunk,
// and a fresh buffer per chunk costs as much in zeroing and garbage collection as the
// decompression itself. Buffers go back with putPlainBuf once nothing refers to them.
var plainBufs sync.Pool // of *[]byte

// maxPooledBuf bounds the buffers kept for reuse (artifact chunks are at most 256 KiB).
const maxPooledBuf = 512 << 10

func getPlainBuf() []byte {
	if p, ok := plainBufs.Get().(*[]byte); ok {
		return (*p)[:0]
	}
	return nil
}

func putPlainBuf(b []byte) {
	if cap(b) == 0 || cap(b) > maxPooledBuf {
		return
	}
	b = b[:0]
	plainBufs.Put(&b)
}

// verifyJob is one object to check and store: a single-part frame (data nil) or the bytes of a
// multi-part object already verified by wire.Object.
type verifyJob struct {
	digest string
	frame  wire.Frame
	data   []byte
}

type verifyResult struct {
	digest string
	err    error
	stored bool // false: the frame failed its check (err); true with err: store failed
}

// takeShared takes one frame of the shared chunk topic, if one is queued, and says whether it
// brought this pull a chunk to verify. A frame that arrives while the pull does not listen
// (subscribed is false) is a late one of an earlier pull's subscription, dropped.
func (f *fetcher) takeShared(ctx context.Context, kind objectKind, st *pullState, subscribed bool, pending *[]verifyJob) (bool, error) {
	b, ok := f.conn.SharedFrames().Pop()
	if !ok || !subscribed {
		return false, nil
	}
	n := len(*pending)
	if err := f.take(ctx, kind, st, b, true, pending); err != nil {
		return false, err
	}
	return len(*pending) > n, nil
}

// fetch gets every digest: store is called with each verified object's bytes, on worker
// goroutines (it must be safe for concurrent use; its error ends the pull). The bytes are
// store's to keep; a chunk's come from getPlainBuf, and store may give them back with
// putPlainBuf. onStored is called on the caller's goroutine after it. It keeps Fetch.Requests
// requests of up to Fetch.Digests digests in flight, asks again for what a request did not
// bring within Fetch.Timeout, fails a digest requested Fetch.Attempts times (ErrAttempts),
// fails when nothing verified for Fetch.Stall (ErrStalled), and fails at once when the hub has
// no such digest (wire.ErrNotFound). preempt, when it reports true, ends the pull with
// errPreempted.
//
// shared, when not nil, is a granted subscription to the model's shared chunk topic: the first
// request of each digest names it (the hub may answer there, once for all devices pulling the
// model), frames arriving there for any digest still wanted are taken like answers (verified
// against the digest the same way), and a retry asks on the device's own topic. A request
// naming it does not time out while shared frames keep coming for the pull: they are the
// answers, slower than one device's because a broker multiplies them to a whole wave.
//
// slot, when not nil and not held, is the pull slot (fleet mode) the caller has not taken yet:
// with a shared subscription the fetch listens (pullState.listening) until the shared topic has
// brought it nothing for listenQuiet timeouts and a slot is free, so a device is listening when
// its wave's chunks go out and holds no slot while they come; without one, it waits for the
// slot before asking anything.
func (f *fetcher) fetch(ctx context.Context, kind objectKind, digests []string, store func(digest string, data []byte) error, onStored func(digest string), preempt func() bool, shared *SharedSub, slot *pullSlot) error {
	if len(digests) == 0 {
		return nil
	}
	jobs, results, quit := startVerifiers(kind, store)
	defer close(quit)
	var pending []verifyJob
	st, err := f.startPull(ctx, digests, shared, slot)
	if err != nil {
		return err
	}
	sawDesired := false // a desired signal was taken during this fetch
	lastProgress := time.Now()
	lastShared := lastProgress // when the shared topic last brought this pull a chunk
	// The tick checks deadlines and the connection: a twentieth of the request timeout (100 ms
	// to 1 s) is soon enough, and thousands of fleet-mode agents pulling at once would spend a
	// core waking every 100 ms.
	tick := time.NewTicker(min(max(f.cfg.Timeout.D()/20, 100*time.Millisecond), time.Second))
	defer tick.Stop()
	if err := f.fill(ctx, st); err != nil {
		return err
	}
	for len(st.wanted) > 0 {
		var send chan verifyJob
		var next verifyJob
		if len(pending) > 0 {
			send, next = jobs, pending[0]
		}
		// Shared frames come whether or not this agent asked for them: take them only while
		// fewer than a window wait for the workers, so memory stays bounded as with requests
		// (beyond the channel's room they are dropped, queue_full, and asked for again).
		sharedQ := f.conn.SharedFrames()
		sharedCh := sharedQ.Ready()
		if len(pending) >= f.cfg.Requests*f.cfg.Digests {
			sharedCh = nil
		}
		var slotCh chan struct{}
		if st.listening() && (st.shared == nil || time.Since(lastShared) > listenQuiet*f.cfg.Timeout.D()) {
			slotCh = slot.waiting() // the wave's publishes are not bringing what this pull lacks
		}
		select {
		case slotCh <- struct{}{}:
			lastProgress = time.Now()
			if err := f.slotTaken(ctx, st, slot, lastProgress); err != nil {
				return err
			}
		case send <- next:
			pending = pending[1:]
		case r := <-results:
			delete(st.verifying, r.digest)
			done, err := f.verified(kind, st, r)
			if err != nil {
				return err
			}
			if done {
				onStored(r.digest)
				lastProgress = time.Now()
				if err := f.fill(ctx, st); err != nil {
					return err
				}
			}
		case <-ctx.Done():
			return ctx.Err()
		case <-f.conn.DesiredSignal():
			// Stop if the news is newer. The signal goes back for the reconciler when this
			// fetch ends (deferred), not now: put back at once, it would be received again at
			// once, and a desired that does not preempt (the same revision sent again) would
			// spin this loop for the rest of the pull. A newer desired signals anew.
			if !sawDesired {
				sawDesired = true
				defer f.resignalDesired()
			}
			if preempt != nil && preempt() {
				return errPreempted
			}
		case <-f.conn.Frames().Ready():
			b, ok := f.conn.Frames().Pop()
			if !ok {
				break
			}
			if err := f.take(ctx, kind, st, b, false, &pending); err != nil {
				return err
			}
		case <-sharedCh:
			took, err := f.takeShared(ctx, kind, st, shared != nil, &pending)
			if err != nil {
				return err
			}
			if took {
				lastShared = time.Now()
			}
		case now := <-tick.C:
			if err := f.tick(ctx, st, now, lastProgress); err != nil {
				return err
			}
		}
	}
	return nil
}

// startVerifiers starts the workers that verify and store whole objects; closing quit stops
// them.
func startVerifiers(kind objectKind, store func(digest string, data []byte) error) (chan verifyJob, chan verifyResult, chan struct{}) {
	jobs := make(chan verifyJob)
	results := make(chan verifyResult, verifyWorkers)
	quit := make(chan struct{})
	for i := 0; i < verifyWorkers; i++ {
		go verifyWorker(kind, store, jobs, results, quit)
	}
	return jobs, results, quit
}

// startPull returns the state of a pull of digests. A pull that may listen on its model's
// shared topic (shared, of this connection) starts listening without a pull slot; one that
// cannot takes its slot first (when slots bound it).
func (f *fetcher) startPull(ctx context.Context, digests []string, shared *SharedSub, slot *pullSlot) (*pullState, error) {
	st := newPullState(digests, f.conn.Gen())
	if shared != nil && shared.Gen == st.gen {
		st.shared = shared
	}
	st.slot = slot
	if st.shared == nil {
		if err := slot.take(ctx); err != nil {
			return nil, err
		}
	}
	return st, nil
}

// slotTaken makes a listening pull that got its slot an ordinary pull, whose requests wait
// their full timeout from now.
func (f *fetcher) slotTaken(ctx context.Context, st *pullState, slot *pullSlot, now time.Time) error {
	slot.took()
	for _, r := range st.inflight {
		r.deadline = f.deadline(r.shared, now)
	}
	return f.fill(ctx, st)
}

// take handles one frame (from the shared topic: shared): a whole object goes to pending for
// the workers, and a request it completes makes room for the next.
func (f *fetcher) take(ctx context.Context, kind objectKind, st *pullState, b []byte, shared bool, pending *[]verifyJob) error {
	j, ok, err := f.handleFrame(kind, st, b, shared)
	if err != nil || !ok {
		return err
	}
	*pending = append(*pending, j)
	if shared {
		// The shared topic is delivering: what the pull asked there is on its way.
		later := f.deadline(true, time.Now())
		for _, r := range st.inflight {
			if r.shared && r.deadline.Before(later) {
				r.deadline = later
			}
		}
	}
	if st.received(j.digest) {
		return f.fill(ctx, st)
	}
	return nil
}

// newPullState returns the bookkeeping of a fetch of digests on connection generation gen.
func newPullState(digests []string, gen uint64) *pullState {
	st := &pullState{
		queue: append([]string(nil), digests...), inflight: map[string]*request{}, owner: map[string]string{},
		attempts: map[string]int{}, objects: map[string]*wire.Object{}, wanted: map[string]bool{},
		verifying: map[string]bool{}, gen: gen,
	}
	for _, d := range digests {
		st.wanted[d] = true
	}
	return st
}

// verifyWorker decompresses and checks the jobs it receives and hands each object's bytes to
// store, until quit is closed. kind chunk is decompressed into a pooled buffer: a fresh one per
// chunk costs as much as the decompression.
func verifyWorker(kind objectKind, store func(digest string, data []byte) error, jobs <-chan verifyJob, results chan<- verifyResult, quit <-chan struct{}) {
	for {
		var j verifyJob
		select {
		case <-quit:
			return
		case j = <-jobs:
		}
		r := verifyResult{digest: j.digest}
		data := j.data
		switch {
		case data != nil: // verified by wire.Object
		case kind == kindChunk:
			buf := getPlainBuf()
			if data, r.err = j.frame.OpenTo(buf); r.err != nil {
				putPlainBuf(buf)
			}
		default:
			data, r.err = j.frame.Open()
		}
		if r.err == nil {
			r.stored = true
			r.err = store(j.digest, data)
		}
		select {
		case <-quit:
			return
		case results <- r:
		}
	}
}

// resignalDesired puts back a desired signal a fetch took (non-blocking: one is enough).
func (f *fetcher) resignalDesired() {
	select {
	case f.conn.DesiredSignal() <- struct{}{}:
	default:
	}
}

// tick is a fetch's periodic check: the stall, a changed connection (everything in flight is
// asked again, not counted as an attempt), requests past their deadline (asked again, counted),
// digests out of attempts; then it refills the window.
func (f *fetcher) tick(ctx context.Context, st *pullState, now, lastProgress time.Time) error {
	if st.listening() {
		// Waiting for a slot is no stall, and nothing is asked again before it is taken.
		if g := f.conn.Gen(); g != st.gen {
			st.gen, st.shared = g, nil
			for id, r := range st.inflight {
				st.requeue(r, false)
				delete(st.inflight, id)
			}
		}
		return nil
	}
	if now.Sub(lastProgress) > f.cfg.Stall.D() {
		return fmt.Errorf("%w: nothing verified for %v, %d objects missing", ErrStalled, f.cfg.Stall.D(), len(st.wanted))
	}
	if g := f.conn.Gen(); g != st.gen {
		// The answers to what was in flight are lost with the old session, and so is the
		// shared subscription (clean session): ask again on the device's own topic.
		st.gen, st.shared = g, nil
		for id, r := range st.inflight {
			st.requeue(r, false)
			delete(st.inflight, id)
		}
	}
	for id, r := range st.inflight {
		if now.After(r.deadline) {
			f.log.Debug("fetch request timed out", "request", id, "missing", len(r.digests))
			st.requeue(r, true)
			delete(st.inflight, id)
		}
	}
	for _, d := range st.queue {
		if st.attempts[d] >= f.cfg.Attempts {
			return fmt.Errorf("%w: %s requested %d times", ErrAttempts, d, st.attempts[d])
		}
	}
	return f.fill(ctx, st)
}

// deadline returns when a request sent at now is asked again: after Fetch.Timeout, or
// wire.SharedDeadline of it for one naming the shared topic, whose chunks the hub may hold back
// for several seconds to gather a wave's devices into one publish (hub/protocol/shared.go).
func (f *fetcher) deadline(shared bool, now time.Time) time.Time {
	if shared {
		return now.Add(wire.SharedDeadline(f.cfg.Timeout.D()))
	}
	return now.Add(f.cfg.Timeout.D())
}

// received books digest d as received whole and handed to the workers: it leaves its request
// (freed reports whether that emptied the request).
func (st *pullState) received(d string) (freed bool) {
	st.verifying[d] = true
	return st.leave(d, st.inflight[st.owner[d]])
}

// leave takes digest d out of request r (nil: none); a request with nothing left to receive
// leaves inflight, and freed reports that.
func (st *pullState) leave(d string, r *request) (freed bool) {
	if r == nil {
		return false
	}
	delete(r.digests, d)
	if len(r.digests) > 0 {
		return false
	}
	delete(st.inflight, r.id)
	return true
}

// requeue puts what r still misses at the front of the queue; counted says whether the
// request counts as a failed attempt.
func (st *pullState) requeue(r *request, counted bool) {
	var back []string
	for d := range r.digests {
		if st.owner[d] == r.id {
			delete(st.owner, d)
		}
		if st.wanted[d] {
			back = append(back, d)
			if !counted {
				st.attempts[d]--
			}
		}
	}
	st.queue = append(back, st.queue...)
}

// fill sends requests until the window is full or nothing is left to ask. While disconnected
// it sends nothing: the tick asks again once the connection is back.
func (f *fetcher) fill(ctx context.Context, st *pullState) error {
	cfg := f.cfg
	if st.listening() && st.shared == nil {
		return nil // the slot comes first
	}
	for len(st.inflight) < cfg.Requests && len(st.verifying) < cfg.Requests*cfg.Digests && len(st.queue) > 0 {
		if !f.conn.Up() {
			return nil
		}
		var batch []string
		rest := st.queue[:0:0]
		for _, d := range st.queue {
			switch {
			case !st.wanted[d] || st.owner[d] != "" || st.verifying[d]:
			case st.listening() && st.attempts[d] > 0:
				rest = append(rest, d) // asked again once the pull holds its slot
			case len(batch) < cfg.Digests:
				batch = append(batch, d)
			default:
				rest = append(rest, d)
			}
		}
		st.queue = rest
		if len(batch) == 0 {
			return nil
		}
		id := f.prefix + "-" + strconv.FormatUint(f.seq, 10)
		f.seq++
		r := &request{id: id, digests: map[string]bool{}, deadline: time.Now().Add(cfg.Timeout.D())}
		first := true // every digest asked for the first time: the request may name st.shared
		for _, d := range batch {
			r.digests[d] = true
			st.owner[d] = id
			first = first && st.attempts[d] == 0
			st.attempts[d]++
		}
		st.inflight[id] = r
		req := wire.FetchRequest{Header: wire.Header{DeviceID: f.device, TS: time.Now().UnixMilli()}, RequestID: id, Digests: batch}
		if first && st.shared != nil {
			req.Shared, req.SharedSub = st.shared.Model, st.shared.ID
			r.shared = true
			r.deadline = f.deadline(true, time.Now())
		}
		b, err := wire.Encode(req)
		if err != nil {
			return fmt.Errorf("encode fetch request: %w", err)
		}
		if err := f.conn.Send(f.topics.Fetch(f.device), b, 1); err != nil {
			// The deadline asks again; a lost connection is noticed by the tick.
			f.log.Debug("fetch request not sent", "request", id, "err", err)
		}
	}
	return nil
}

// handleFrame decodes one frame and returns the job that verifies and stores its object, once
// the object is whole (single-part frames at once; parts are collected here).
//
// A frame from the shared topic (shared) answers no request of this agent: it is taken for any
// digest still wanted, as one whole chunk only. A not-found or partial frame there is refused
// (the hub sends neither there), so no other publisher can fail or stall the pull.
func (f *fetcher) handleFrame(kind objectKind, st *pullState, b []byte, shared bool) (verifyJob, bool, error) {
	fr, ok := f.decode(b, shared)
	if !ok {
		return verifyJob{}, false, nil
	}
	d := fr.DigestString()
	if shared && (fr.Kind != wire.FrameData || fr.Offset != 0 || fr.Plain != fr.Total) {
		f.reject(ReasonBadFrame, "not a whole chunk on the shared chunk topic", "digest", d)
		return verifyJob{}, false, nil
	}
	if !st.wanted[d] || st.verifying[d] {
		return verifyJob{}, false, nil // a duplicate or late answer: already have it
	}
	if fr.Kind == wire.FrameNotFound {
		if kind == kindManifest {
			f.reject(ReasonUnknownModel, "hub has no such manifest", "digest", d)
		}
		return verifyJob{}, false, fmt.Errorf("fetch %s: %w", d, wire.ErrNotFound)
	}
	if fr.Offset == 0 && fr.Plain == fr.Total {
		return verifyJob{digest: d, frame: fr}, true, nil
	}
	o := st.objects[d]
	if o == nil {
		var err error
		if o, err = wire.NewObject(fr); err != nil {
			f.reject(ReasonBadFrame, "bad frame", "digest", d, "err", err)
			return verifyJob{}, false, nil
		}
		st.objects[d] = o
	}
	complete, err := o.Add(fr)
	if err != nil {
		f.refused(kind, st, d, err)
		return verifyJob{}, false, nil
	}
	if !complete {
		return verifyJob{}, false, nil
	}
	return verifyJob{digest: d, data: o.Bytes()}, true, nil
}

// verified books a worker's result: done reports that the object is stored.
func (f *fetcher) verified(kind objectKind, st *pullState, r verifyResult) (done bool, err error) {
	d := r.digest
	if r.err != nil {
		if r.stored {
			return false, r.err
		}
		f.refused(kind, st, d, r.err)
		return false, nil
	}
	delete(st.wanted, d)
	delete(st.objects, d)
	if id := st.owner[d]; id != "" {
		delete(st.owner, d)
		if r := st.inflight[id]; r != nil {
			delete(r.digests, d)
			if len(r.digests) == 0 {
				delete(st.inflight, id)
			}
		}
	}
	return true, nil
}

// refused counts an object whose frames failed their check. A digest mismatch (forged or
// damaged bytes), or any damage to an object already received whole (its request no longer
// waits for it, so no deadline would ask again), is asked for again at once; a damaged part of
// an object still arriving waits for the request's deadline.
func (f *fetcher) refused(kind objectKind, st *pullState, d string, err error) {
	reason := ReasonBadFrame
	digestErr := errors.Is(err, wire.ErrFrameDigest)
	if digestErr {
		reason = ReasonChunkDigest
		if kind == kindManifest {
			reason = ReasonManifestDigest
		}
	}
	id := st.owner[d]
	r := st.inflight[id]
	if id != "" && (digestErr || r == nil || !r.digests[d]) {
		delete(st.objects, d)
		delete(st.owner, d)
		st.leave(d, r)
		st.queue = append([]string{d}, st.queue...)
	}
	f.reject(reason, "frame refused", "digest", d, "err", err)
}

// decode parses a chunk-topic message and checks its request id (not on the shared topic, whose
// frames answer every device's requests), counting what it refuses.
func (f *fetcher) decode(b []byte, shared bool) (wire.Frame, bool) {
	if len(b) > wire.MaxFrameSize {
		f.reject(ReasonOversizedFrame, "oversized chunk frame", "bytes", len(b))
		return wire.Frame{}, false
	}
	fr, err := wire.DecodeFrame(b)
	if err != nil {
		f.reject(ReasonBadFrame, "bad chunk frame", "err", err)
		return wire.Frame{}, false
	}
	if !shared && !f.issued(fr.RequestID) {
		f.reject(ReasonUnknownRequest, "chunk frame for a request this agent never sent", "request", fr.RequestID)
		return wire.Frame{}, false
	}
	return fr, true
}

// drainIdle handles frames that arrive while no pull runs: they are checked and counted like
// any other, then dropped.
func (f *fetcher) drainIdle(b []byte) {
	if _, ok := f.decode(b, false); ok {
		f.log.Debug("late chunk frame dropped")
	}
}
