package reconcile

import (
	"context"
	"sync"
)

// Budget bounds, in bytes, what the pulls sharing it hold at once. Fleet mode gives one to all
// its agents for their listening on shared chunk topics (Config.ListenBudget): a listener is
// charged twice its model's size (listenCharge: every publish of its wave brings it that much to
// parse, and one may wait for the verify workers while the next arrives), and the process holds
// every listener's. Bounding bytes rather than pulls lets a wave of thousands
// of devices of a small model listen at once (one publish for all of them), while a large model
// still listens in as many groups as the process can hold.
//
// Take waits in arrival order: a large request at the head is not overtaken by small ones.
type Budget struct {
	mu      sync.Mutex
	max     int64
	used    int64
	waiters []*budgetWaiter
}

type budgetWaiter struct {
	n     int64
	ready chan struct{}
}

// NewBudget returns a budget of size bytes (at least 1).
func NewBudget(size int64) *Budget { return &Budget{max: max(size, 1)} }

// Max returns the budget's size.
func (b *Budget) Max() int64 { return b.max }

// Take waits until n bytes (clamped to [1, Max]) are free and takes them, in arrival order. It
// returns the bytes taken (to give back with Release), or ctx's error.
func (b *Budget) Take(ctx context.Context, n int64) (int64, error) {
	n = min(max(n, 1), b.max)
	b.mu.Lock()
	if len(b.waiters) == 0 && b.used+n <= b.max {
		b.used += n
		b.mu.Unlock()
		return n, nil
	}
	w := &budgetWaiter{n: n, ready: make(chan struct{})}
	b.waiters = append(b.waiters, w)
	b.mu.Unlock()
	select {
	case <-w.ready:
		return n, nil
	case <-ctx.Done():
		b.mu.Lock()
		defer b.mu.Unlock()
		select {
		case <-w.ready: // granted meanwhile: give it back
			b.used -= n
			b.grantLocked()
		default:
			for i, x := range b.waiters {
				if x == w {
					b.waiters = append(b.waiters[:i], b.waiters[i+1:]...)
					break
				}
			}
			b.grantLocked() // the head may have changed
		}
		return 0, ctx.Err()
	}
}

// Release gives back n bytes Take returned.
func (b *Budget) Release(n int64) {
	b.mu.Lock()
	b.used -= n
	b.grantLocked()
	b.mu.Unlock()
}

// InUse returns the bytes taken now.
func (b *Budget) InUse() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}

// grantLocked wakes the waiters at the head whose bytes fit.
func (b *Budget) grantLocked() {
	for len(b.waiters) > 0 && b.used+b.waiters[0].n <= b.max {
		w := b.waiters[0]
		b.waiters = b.waiters[1:]
		b.used += w.n
		close(w.ready)
	}
}
