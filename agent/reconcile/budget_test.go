package reconcile

import (
	"context"
	"testing"
	"time"

	"github.com/driftline/driftline/internal/testhelp"
)

// TestBudgetByBytes: a budget holds as many takers as their bytes allow (eight of 512 KiB in
// 4 MiB, where a count of slots would have to be set for one size); a taker that does not fit
// waits, in arrival order, until enough is released; a take larger than the budget is clamped
// to it; a waiter whose context ends gives up without taking anything.
func TestBudgetByBytes(t *testing.T) {
	ctx := context.Background()
	b := NewBudget(4 << 20)
	for i := 0; i < 8; i++ {
		if n, err := b.Take(ctx, 512<<10); err != nil || n != 512<<10 {
			t.Fatalf("take %d: %d, %v", i, n, err)
		}
	}
	got := make(chan int64, 2)
	go func() { n, _ := b.Take(ctx, 1<<20); got <- n }()
	waitWaiters(t, b, 1)
	go func() { n, _ := b.Take(ctx, 100); got <- n }()
	waitWaiters(t, b, 2)
	b.Release(512 << 10)
	select {
	case n := <-got:
		t.Fatalf("a take of %d bytes went ahead with 512 KiB free", n)
	default:
	}
	b.Release(512 << 10)
	if n := <-got; n != 1<<20 {
		t.Fatalf("first waiter got %d, want 1 MiB (arrival order)", n)
	}
	b.Release(512 << 10) // the budget was full again
	if n := <-got; n != 100 {
		t.Fatalf("second waiter got %d", n)
	}

	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { _, err := b.Take(cctx, 8<<20); done <- err }()
	waitWaiters(t, b, 1)
	cancel()
	if err := <-done; err == nil {
		t.Fatal("a cancelled take succeeded")
	}
	if b.InUse() != 4<<20-512<<10+100 {
		t.Fatalf("in use %d after a cancelled take", b.InUse())
	}
	for i := 0; i < 5; i++ {
		b.Release(512 << 10)
	}
	b.Release(1<<20 + 100)
	if n, err := b.Take(ctx, 8<<20); err != nil || n != 4<<20 {
		t.Fatalf("take larger than the budget: %d, %v; want clamped to 4 MiB", n, err)
	}
}

func waitWaiters(t *testing.T, b *Budget, n int) {
	t.Helper()
	testhelp.WaitFor(t, 5*time.Second, "budget waiters", func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return len(b.waiters) == n
	})
}
