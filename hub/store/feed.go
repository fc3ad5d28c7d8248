package store

import (
	"context"
	"sync"

	"github.com/dgraph-io/badger/v4"

	"github.com/driftline/driftline/hub/command"
)

// Change is one entry of the change feed: what a committed command changed, as the Processor
// described it (Event), or a Reset.
type Change struct {
	// Index is the raft index of the command that made the change; for a Reset, the applied
	// index of the state to rescan.
	Index uint64
	// Reset says the state may have changed in ways no change describes (a snapshot was
	// restored, or the subscription just began): consumers rescan what they keep.
	Reset bool
	// Event is the processor's typed change (hub/state.Change for the hub); nil with Reset.
	Event any
}

// ChangeProcessor is a Processor that describes what each command changed. The store calls
// ApplyChanges instead of Apply; emit may be called any number of times during the call. What
// is emitted for a command that returns an error, or in a transaction badger refuses as too
// big, is dropped; the rest is delivered to every subscription of the node's Feed after the
// transaction committed.
type ChangeProcessor interface {
	Processor
	ApplyChanges(txn *badger.Txn, index uint64, env command.Envelope, emit func(any)) (any, error)
}

// Feed delivers the changes the FSM commits on this node to its subscribers: every change to
// every subscription exactly once, in commit order, after the transaction holding it committed.
// The FSM never waits for a subscriber: each subscription queues without bound, so a consumer
// that falls far behind costs memory, not commits.
type Feed struct {
	mu   sync.Mutex
	subs map[*Subscription]bool
	last uint64 // index of the last published change or reset
}

// NewFeed returns an empty feed. Store.Open makes one unless Config.Changes gives it.
func NewFeed() *Feed { return &Feed{subs: map[*Subscription]bool{}} }

// Subscription is one consumer's queue of changes. Its first change is a Reset at the index
// last published when it was made (the consumer scans the state it needs then); every change
// published afterwards follows, each once, in order.
type Subscription struct {
	f      *Feed
	mu     sync.Mutex
	q      []Change
	signal chan struct{}
	closed bool
}

// Subscribe starts a subscription. Close it when done.
func (f *Feed) Subscribe() *Subscription {
	s := &Subscription{f: f, signal: make(chan struct{}, 1)}
	f.mu.Lock()
	defer f.mu.Unlock()
	s.q = []Change{{Index: f.last, Reset: true}}
	s.signal <- struct{}{}
	f.subs[s] = true
	return s
}

// Publish hands changes to every subscription, in order. The FSM calls it after each commit;
// nothing else should, except an in-process test store that applies commands itself
// (hub/state/statetest).
func (f *Feed) Publish(cs []Change) {
	if len(cs) == 0 {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.last = cs[len(cs)-1].Index
	for s := range f.subs {
		s.mu.Lock()
		s.q = append(s.q, cs...)
		s.mu.Unlock()
		select {
		case s.signal <- struct{}{}:
		default:
		}
	}
}

// Next waits for changes and returns every queued one, oldest first. It returns ctx's error when
// ctx ends first, and ErrShutdown after Close.
func (s *Subscription) Next(ctx context.Context) ([]Change, error) {
	for {
		cs, err := s.Take()
		if err != nil || len(cs) > 0 {
			return cs, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-s.signal:
		}
	}
}

// Ready has a value when changes may be queued (Take them); a consumer that selects on other
// channels too waits on it instead of calling Next.
func (s *Subscription) Ready() <-chan struct{} { return s.signal }

// Take returns every queued change, oldest first, without waiting (none: an empty slice), and
// ErrShutdown after Close.
func (s *Subscription) Take() ([]Change, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrShutdown
	}
	out := s.q
	s.q = nil
	return out, nil
}

// Close ends the subscription; Next returns ErrShutdown from then on.
func (s *Subscription) Close() {
	s.f.mu.Lock()
	delete(s.f.subs, s)
	s.f.mu.Unlock()
	s.mu.Lock()
	s.closed = true
	s.q = nil
	s.mu.Unlock()
	select {
	case s.signal <- struct{}{}:
	default:
	}
}
