// Package msgq is the bounded queue between the MQTT client's message handler and the agent's
// goroutines (chunk frames, shared chunk frames, data payloads). Its producer never blocks: a
// full queue refuses the message, which the caller counts and drops (the pull's timeout asks
// again). Unlike a buffered channel of the same bound, it holds memory for what it holds, not
// for its bound: an idle queue is a few words, so an idle device keeps no per-queue buffers
// (a channel of 1,024 []byte is 24 KiB whether or not anything ever arrives, and the garbage
// collector scans it on every cycle).
package msgq

import "sync"

// keepCap is the largest backing array an emptied queue keeps for its next burst; a bigger one
// (a pull's burst of frames) is released, so a queue shrinks back when it empties.
const keepCap = 16

// Queue is a bounded FIFO of byte slices, safe for one or more producers and consumers. The
// consumer selects on Ready and then calls Pop until it returns false, or Pop once per Ready:
// Pop signals Ready again while messages remain.
type Queue struct {
	max   int
	ready chan struct{} // 1-slot: something may be waiting

	mu    sync.Mutex
	items [][]byte
	head  int
}

// New returns an empty queue that holds at most bound messages (bound < 1 is taken as 1).
func New(bound int) *Queue {
	return &Queue{max: max(bound, 1), ready: make(chan struct{}, 1)}
}

// Push appends b and reports whether it was taken; a full queue refuses it. It never blocks.
func (q *Queue) Push(b []byte) bool {
	q.mu.Lock()
	if len(q.items)-q.head >= q.max {
		q.mu.Unlock()
		return false
	}
	if q.head > 0 && len(q.items) == cap(q.items) {
		// Reuse the consumed front before growing.
		n := copy(q.items, q.items[q.head:])
		clear(q.items[n:])
		q.items, q.head = q.items[:n], 0
	}
	q.items = append(q.items, b)
	q.mu.Unlock()
	q.signal()
	return true
}

// Ready holds a value while the queue may hold a message. A nil *Queue's Ready is nil (a select
// case that never fires).
func (q *Queue) Ready() <-chan struct{} {
	if q == nil {
		return nil
	}
	return q.ready
}

// Pop removes and returns the oldest message, or false when the queue is empty. When messages
// remain it signals Ready again, so a consumer that pops once per Ready sees them all.
func (q *Queue) Pop() ([]byte, bool) {
	if q == nil {
		return nil, false
	}
	q.mu.Lock()
	if q.head == len(q.items) {
		q.mu.Unlock()
		return nil, false
	}
	b := q.items[q.head]
	q.items[q.head] = nil
	q.head++
	more := q.head < len(q.items)
	if !more {
		q.resetLocked()
	}
	q.mu.Unlock()
	if more {
		q.signal()
	}
	return b, true
}

// Drain drops every queued message and returns how many there were.
func (q *Queue) Drain() int {
	if q == nil {
		return 0
	}
	// The signal is taken before the messages: a Push that lands after them signals again,
	// where taking it afterwards could swallow that Push's signal and leave its message
	// queued with Ready empty.
	select {
	case <-q.ready:
	default:
	}
	q.mu.Lock()
	n := len(q.items) - q.head
	clear(q.items[q.head:])
	q.resetLocked()
	q.mu.Unlock()
	return n
}

// Len returns the number of queued messages.
func (q *Queue) Len() int {
	if q == nil {
		return 0
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items) - q.head
}

// resetLocked empties the queue, releasing a backing array grown by a burst.
func (q *Queue) resetLocked() {
	if cap(q.items) > keepCap {
		q.items = nil
	} else {
		q.items = q.items[:0]
	}
	q.head = 0
}

func (q *Queue) signal() {
	select {
	case q.ready <- struct{}{}:
	default:
	}
}
