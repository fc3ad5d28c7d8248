package devicedb

import (
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
)

// TestGroupSyncShares: callers arriving while a sync runs share the next one, and every caller
// returns only after a sync that started after its call (it sees its writes synced).
func TestGroupSyncShares(t *testing.T) {
	var g groupSync
	var started, syncs atomic.Int64
	release := make(chan struct{})
	first := make(chan struct{})
	syncFn := func() error {
		n := syncs.Add(1)
		started.Store(n)
		if n == 1 {
			close(first)
			<-release // hold the first sync while the others arrive
		}
		return nil
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = g.do(syncFn) }()
	<-first
	const late = 50
	seen := make([]int64, late)
	for i := range late {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := g.do(syncFn); err != nil {
				t.Error(err)
			}
			seen[i] = started.Load()
		}()
	}
	// Let the late callers queue behind the running sync, then release it.
	for {
		g.mu.Lock()
		n := len(g.waiting)
		g.mu.Unlock()
		if n == late {
			break
		}
		runtime.Gosched()
	}
	close(release)
	wg.Wait()
	if n := syncs.Load(); n != 2 {
		t.Fatalf("%d syncs for 1 + %d callers, want 2 (one running, one shared)", n, late)
	}
	for i, s := range seen {
		if s < 2 {
			t.Fatalf("caller %d returned after sync %d, which started before its call", i, s)
		}
	}
	boom := errors.New("boom")
	if err := g.do(func() error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("error not passed on: %v", err)
	}
}
