package broker

import (
	"bytes"
	"hash/fnv"
	"log/slog"
	"sync"
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
type dispatcher struct {
	queues []chan delivery
	wg     sync.WaitGroup
	m      *metrics
	log    *slog.Logger

	mu     sync.RWMutex // guards closed against enqueue racing close
	closed bool
}

type delivery struct {
	handle  func(topic string, payload []byte)
	topic   string
	payload []byte
}

// newDispatcher starts workers goroutines, each with a queue of depth messages.
func newDispatcher(workers, depth int, m *metrics, log *slog.Logger) *dispatcher {
	d := &dispatcher{queues: make([]chan delivery, workers), m: m, log: log}
	for i := range d.queues {
		q := make(chan delivery, depth)
		d.queues[i] = q
		d.wg.Add(1)
		go d.work(q)
	}
	return d
}

// enqueue hands a copy of payload to the worker of topic; it never blocks, and reports false
// when the message was dropped (queue full, or dispatcher closed).
func (d *dispatcher) enqueue(handle func(string, []byte), topic string, payload []byte) bool {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.closed {
		return false
	}
	hs := fnv.New32a()
	_, _ = hs.Write([]byte(topic))
	q := d.queues[hs.Sum32()%uint32(len(d.queues))]
	select {
	case q <- delivery{handle: handle, topic: topic, payload: bytes.Clone(payload)}:
		return true
	default:
		d.m.drop(reasonHandlerQueue)
		d.log.Debug("mqtt handler queue full, message dropped", "topic", topic)
		return false
	}
}

// close stops accepting messages, lets the workers finish what is queued, and waits for them.
func (d *dispatcher) close() {
	d.mu.Lock()
	if !d.closed {
		d.closed = true
		for _, q := range d.queues {
			close(q)
		}
	}
	d.mu.Unlock()
	d.wg.Wait()
}

func (d *dispatcher) work(q chan delivery) {
	defer d.wg.Done()
	for dl := range q {
		d.run(dl)
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
