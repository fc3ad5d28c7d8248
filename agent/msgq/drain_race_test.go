package msgq

import (
	"sync"
	"testing"
)

// TestDrainKeepsSignalOfConcurrentPush: a message pushed while Drain runs is either dropped by
// it or left with Ready signalled, never left queued with no signal (a consumer selecting on
// Ready would not see it until the next push).
func TestDrainKeepsSignalOfConcurrentPush(t *testing.T) {
	q := New(4)
	for i := 0; i < 200000; i++ {
		q.Push([]byte{1}) // Ready signalled
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); q.Push([]byte{2}) }()
		go func() { defer wg.Done(); q.Drain() }()
		wg.Wait()
		if q.Len() > 0 {
			select {
			case <-q.Ready():
			default:
				t.Fatalf("round %d: %d message(s) queued with Ready not signalled", i, q.Len())
			}
		}
		q.Drain()
	}
}
