package broker

import (
	"bytes"
	"hash/fnv"
	"log/slog"
	"sync"
	"time"
)

// dispatcher runs the hub's Subscribe handlers away from the broker. Mochi calls an inline
// subscription's handler on the goroutine of the client that published, inside the broker's
// routing of that message: a handler that blocks (a Raft apply, a badger write) would stall that
// client and every subscriber after it. So the inline handler only enqueues, without blocking.
//
// Messages are spread over a fixed set of workers by a hash of the topic; each worker has a
// bounded queue and runs its messages in arrival order, so messages of one topic are handled in
// the order the broker routed them. When a worker's queue is full the message is dropped and
// counted in driftline_hub_mqtt_dropped_total{reason="handler_queue"}: the broker never waits for
// the hub.
//
// The retained messages a new subscription matches are not queued there: each worker also has
// a replay list (replay), unbounded, of the topics whose retained message it still owes a
// handler. It holds no payload: when the worker comes to an entry it reads the topic's retained
// message as it is then, so a replay never hands over a copy older than a live message already
// queued for that topic.
type dispatcher struct {
	workers []*worker
	ret     *retainedStore
	wg      sync.WaitGroup
	m       *metrics
	log     *slog.Logger

	mu     sync.RWMutex // guards closed against enqueue racing close
	closed bool
}

// worker is one handler goroutine: its live queue and its retained replay list.
type worker struct {
	q    chan delivery
	wake chan struct{} // capacity 1: the replay list got entries

	mu     sync.Mutex
	replay []replayed // FIFO from head
	head   int
}

type delivery struct {
	handle  func(topic string, payload []byte)
	topic   string
	payload []byte
}

// replayed is a topic whose retained message a handler is owed.
type replayed struct {
	handle func(topic string, payload []byte)
	topic  string
}

// newDispatcher starts workers goroutines, each with a queue of depth messages; ret is the
// store replay reads retained messages from.
func newDispatcher(workers, depth int, ret *retainedStore, m *metrics, log *slog.Logger) *dispatcher {
	d := &dispatcher{workers: make([]*worker, workers), ret: ret, m: m, log: log}
	for i := range d.workers {
		w := &worker{q: make(chan delivery, depth), wake: make(chan struct{}, 1)}
		d.workers[i] = w
		d.wg.Add(1)
		go d.work(w)
	}
	return d
}

// worker returns topic's worker: all of one topic's messages, live and replayed, run on it.
func (d *dispatcher) worker(topic string) *worker {
	hs := fnv.New32a()
	_, _ = hs.Write([]byte(topic))
	return d.workers[hs.Sum32()%uint32(len(d.workers))]
}

// enqueue hands a copy of payload to the worker of topic; it never blocks, and reports false
// when the message was dropped (queue full, or dispatcher closed).
func (d *dispatcher) enqueue(handle func(string, []byte), topic string, payload []byte) bool {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.closed {
		return false
	}
	select {
	case d.worker(topic).q <- delivery{handle: handle, topic: topic, payload: bytes.Clone(payload)}:
		return true
	default:
		d.m.drop(reasonHandlerQueue)
		d.log.Debug("mqtt handler queue full, message dropped", "topic", topic)
		return false
	}
}

// replay owes handle the retained message of each of topics. It never blocks and drops
// nothing: the entries go on their workers' replay lists (24 bytes each, no payload),
// which a worker serves whenever its live queue is empty. Each entry delivers the topic's
// retained message as the store holds it when the worker reaches it (nothing if it was cleared
// or has expired since), so a live message on the topic queued before that moment is never
// followed by an older retained copy; the handler may get the same message twice (live and
// replayed). It reports false when the dispatcher is closed.
func (d *dispatcher) replay(handle func(string, []byte), topics []string) bool {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.closed {
		return false
	}
	for _, t := range topics {
		w := d.worker(t)
		w.mu.Lock()
		w.replay = append(w.replay, replayed{handle: handle, topic: t})
		w.mu.Unlock()
	}
	for _, w := range d.workers {
		select {
		case w.wake <- struct{}{}:
		default: // already signalled
		}
	}
	return true
}

// peek returns the oldest entry of w's replay list, leaving it there. Only w's goroutine takes
// entries, so what peek returned is still the oldest at the next pop.
func (w *worker) peek() (replayed, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.head == len(w.replay) {
		return replayed{}, false
	}
	return w.replay[w.head], true
}

// pop removes the oldest entry of w's replay list.
func (w *worker) pop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.replay[w.head] = replayed{}
	w.head++
	if w.head == len(w.replay) { // drained: let the backing array go
		w.replay, w.head = nil, 0
	}
}

// close stops accepting messages, lets the workers finish what is queued live, and waits for
// them. Replay entries not yet served are abandoned: they are retained messages, read again by
// the next Subscribe.
func (d *dispatcher) close() {
	d.mu.Lock()
	if !d.closed {
		d.closed = true
		for _, w := range d.workers {
			close(w.q)
		}
	}
	d.mu.Unlock()
	d.wg.Wait()
}

// work runs w's live messages first and its replay entries when no live message waits, so a
// large replay neither delays nor (by filling the queue) drops live messages.
//
// A replay entry reads the topic's retained message and then checks the live queue again: a
// live message routed in between (its retained copy was stored before it was queued, so the
// read may have returned a newer one) is handled first and the entry read again. So with one
// publisher per topic the handler never sees an older message after a newer one.
func (d *dispatcher) work(w *worker) {
	defer d.wg.Done()
	for {
		select {
		case dl, ok := <-w.q:
			if !ok {
				return
			}
			d.run(dl)
			continue
		default:
		}
		if r, ok := w.peek(); ok {
			m, ok := d.ret.get(r.topic)
			if len(w.q) > 0 {
				continue // live first; the entry stays
			}
			w.pop()
			if ok && !m.expired(time.Now().Unix()) { // cleared or expired since: nothing owed
				d.run(delivery{handle: r.handle, topic: r.topic, payload: bytes.Clone(m.payload)})
			}
			continue
		}
		select {
		case dl, ok := <-w.q:
			if !ok {
				return
			}
			d.run(dl)
		case <-w.wake:
		}
	}
}

// run calls one handler; a panic is logged and the worker goes on with the next message.
func (d *dispatcher) run(dl delivery) {
	defer func() {
		if r := recover(); r != nil {
			d.log.Error("mqtt handler panicked", "topic", dl.topic, "panic", r)
		}
	}()
	dl.handle(dl.topic, dl.payload)
}
