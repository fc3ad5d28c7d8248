package outbox

import (
	"sync"
	"testing"
	"time"
)

// TestStatsNotBlockedBySlowWrite: Stats (which the heartbeat calls on every beat) answers while an
// Enqueue's write is slow (in fleet mode a commit queues behind thousands of agents'), with the
// figures from before that write; once it lands, the queued report is counted.
func TestStatsNotBlockedBySlowWrite(t *testing.T) {
	o, err := Open(openMem(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := o.Enqueue("dl/v1/dev/d/reported", []byte(`{"a":1}`), 1, true); err != nil {
		t.Fatal(err)
	}
	held, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	o.writeHeld = func() {
		once.Do(func() { close(held) })
		<-release
	}
	done := make(chan error, 1)
	go func() { done <- o.Enqueue("dl/v1/dev/d/reported", []byte(`{"a":2}`), 1, true) }()
	<-held

	got := make(chan Stats, 1)
	go func() { got <- o.Stats() }()
	select {
	case st := <-got:
		if st.Depth != 1 {
			t.Errorf("Stats during the write: depth %d, want 1 (the write has not landed)", st.Depth)
		}
	case <-time.After(5 * time.Second):
		t.Error("Stats blocked by an Enqueue's write")
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if st := o.Stats(); st.Depth != 2 {
		t.Fatalf("after the write: depth %d, want 2", st.Depth)
	}
}
