package gcpace

import (
	"context"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/driftline/driftline/internal/testhelp"
)

// grow recurses until it has used at least n bytes of stack, then returns.
func grow(n int) byte {
	var pad [1024]byte
	pad[n%len(pad)] = byte(n)
	if n <= len(pad) {
		return pad[0]
	}
	return grow(n-len(pad)) + pad[n%len(pad)]
}

func stacksInUse() uint64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.StackInuse
}

// TestRunShrinksIdleStacks: goroutines whose stacks a burst grew to 64 KiB and that then wait at
// a shallow depth (a broker's reader after a publish) give their stacks back within a few
// intervals although the process allocates nothing: without Run no collection runs, and the
// stacks stay grown.
func TestRunShrinksIdleStacks(t *testing.T) {
	const n = 200
	release := make(chan struct{})
	var started, done sync.WaitGroup
	for range n {
		started.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			_ = grow(48 << 10)
			started.Done()
			<-release
		}()
	}
	started.Wait()
	defer func() { close(release); done.Wait() }()
	grown := stacksInUse()
	if grown < n*64<<10 {
		t.Fatalf("stacks in use %d KiB: the goroutines did not grow theirs to 64 KiB", grown>>10)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go Run(ctx, 20*time.Millisecond)
	// Each collection halves an idle stack: 64 -> 32 -> 16 -> 8 KiB, a quarter of it at most
	// in use. Freed: at least 48 KiB per goroutine.
	want := grown - n*48<<10
	testhelp.WaitFor(t, 10*time.Second, "idle stacks shrunk by the periodic collections", func() bool {
		return stacksInUse() <= want
	})
	t.Logf("stacks in use: %d KiB grown, %d KiB after the collections", grown>>10, stacksInUse()>>10)
}

// TestRunOffWithoutInterval: an interval of zero or less runs nothing and returns.
func TestRunOffWithoutInterval(t *testing.T) {
	ret := make(chan struct{})
	go func() { Run(context.Background(), 0); close(ret) }()
	select {
	case <-ret:
	case <-time.After(10 * time.Second):
		t.Fatal("Run with interval 0 did not return")
	}
}
