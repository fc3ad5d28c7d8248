package msgq

import (
	"fmt"
	"runtime"
	"sync"
	"testing"
)

func TestQueueOrderBoundAndDrain(t *testing.T) {
	q := New(3)
	for i := 0; i < 3; i++ {
		if !q.Push([]byte{byte(i)}) {
			t.Fatalf("push %d refused below the bound", i)
		}
	}
	if q.Push([]byte{9}) {
		t.Fatal("a full queue took a fourth message")
	}
	for i := 0; i < 3; i++ {
		select {
		case <-q.Ready():
		default:
			t.Fatalf("Ready not signalled with %d messages queued", q.Len())
		}
		b, ok := q.Pop()
		if !ok || b[0] != byte(i) {
			t.Fatalf("pop %d = %v, %v", i, b, ok)
		}
	}
	if _, ok := q.Pop(); ok {
		t.Fatal("pop from an empty queue")
	}
	select {
	case <-q.Ready():
		t.Fatal("Ready still signalled on an empty queue after popping everything")
	default:
	}
	q.Push([]byte{1})
	q.Push([]byte{2})
	if n := q.Drain(); n != 2 {
		t.Fatalf("Drain = %d, want 2", n)
	}
	if q.Len() != 0 {
		t.Fatalf("Len after Drain = %d", q.Len())
	}
	var nilQ *Queue
	if nilQ.Ready() != nil || nilQ.Len() != 0 || nilQ.Drain() != 0 {
		t.Fatal("a nil queue is not empty")
	}
}

// TestQueueReusesFront: a queue that is popped as fast as it is pushed stays within its bound
// and keeps its order across the compaction of its consumed front.
func TestQueueReusesFront(t *testing.T) {
	q := New(4)
	next := 0
	for i := 0; i < 100; i++ {
		if !q.Push([]byte(fmt.Sprint(i))) {
			t.Fatalf("push %d refused with %d queued", i, q.Len())
		}
		if i%2 == 1 {
			for q.Len() > 1 {
				b, _ := q.Pop()
				if string(b) != fmt.Sprint(next) {
					t.Fatalf("popped %s, want %d", b, next)
				}
				next++
			}
		}
	}
}

// TestQueueConcurrent: every message pushed by several producers is popped once by a consumer
// that pops once per Ready (run with -race).
func TestQueueConcurrent(t *testing.T) {
	q := New(1 << 20)
	const producers, each = 4, 2000
	var wg sync.WaitGroup
	for p := 0; p < producers; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				q.Push([]byte{byte(p)})
			}
		}()
	}
	got := 0
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for got < producers*each {
		select {
		case <-q.Ready():
			if _, ok := q.Pop(); ok {
				got++
			}
		case <-done:
			for {
				if _, ok := q.Pop(); !ok {
					break
				}
				got++
			}
			if got != producers*each {
				t.Fatalf("popped %d of %d", got, producers*each)
			}
		}
	}
}

// TestIdleQueueMemory: an idle queue of bound 1,024 costs a few hundred bytes, not the 24 KiB
// a channel of 1,024 []byte holds from its creation; and a queue that took a burst of 1,000
// messages gives the burst's array back once emptied. An agent holds three of these (its chunk
// topic, the shared chunk topic, its data topic): 10,000 idle agents held 720 MiB of channel
// buffers, all of it scanned by every garbage collection.
func TestIdleQueueMemory(t *testing.T) {
	const n = 1000
	qs := make([]*Queue, n)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := range qs {
		qs[i] = New(1024)
	}
	runtime.ReadMemStats(&after)
	perQueue := (after.TotalAlloc - before.TotalAlloc) / n
	if perQueue > 512 {
		t.Fatalf("an idle queue of bound 1024 allocates %d bytes; want at most 512", perQueue)
	}
	q := qs[0]
	for i := 0; i < 1000; i++ {
		q.Push(make([]byte, 1))
	}
	if cap(q.items) < 1000 {
		t.Fatalf("burst held in %d slots", cap(q.items))
	}
	for {
		if _, ok := q.Pop(); !ok {
			break
		}
	}
	if cap(q.items) > keepCap {
		t.Fatalf("an emptied queue keeps %d slots of its burst; want at most %d", cap(q.items), keepCap)
	}
}
