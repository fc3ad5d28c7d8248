// Package gcpace makes a long-running process collect garbage at least once per interval, so
// that goroutine stacks grown by a burst of work are given back within that interval and not
// only when the heap next reaches the collector's goal.
//
// The Go runtime shrinks a goroutine's stack only during a collection (halving it when less
// than a quarter is in use), and its collections are paced by heap allocation alone. A hub
// with 10,000 connected devices runs two broker goroutines per device; the reader's stack grows
// from 16 to 32 KiB on every publish the device sends (mochi's packet handling is ~19 KiB of
// frames) and stays 32 KiB until a collection. With heartbeats every 10 s and a collection
// every 20-30 s (what GOGC 50 gives a hub allocating a few MB a second, whose heap goal the
// stacks themselves raise), nearly every reader holds 32 KiB: 36.8 KiB of stacks per device
// measured at 10,000 (docs/benchmarks.md, issue 18). Collecting at least every few seconds keeps
// most readers at 16 KiB and the heap close to what is live, for the cost of marking the live
// heap that often.
package gcpace

import (
	"context"
	"runtime"
	"runtime/metrics"
	"time"
)

// cyclesMetric counts the completed collections of the process.
const cyclesMetric = "/gc/cycles/total:gc-cycles"

// Run collects garbage whenever interval passes without a collection, until ctx is done. A
// collection the runtime ran on its own (allocation) within the interval counts, so a process
// that allocates fast pays nothing extra. interval <= 0 returns at once.
func Run(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	sample := []metrics.Sample{{Name: cyclesMetric}}
	last := cycles(sample)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if now := cycles(sample); now != last {
			last = now
			continue
		}
		runtime.GC()
		last = cycles(sample)
	}
}

// cycles is the number of collections completed so far.
func cycles(s []metrics.Sample) uint64 {
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}

// DefaultInterval is hub serve's --gc-interval: 0, the runtime's pacing only. Measured at 10,000
// agents (docs/benchmarks.md, issue 18), 5 s brings the hub from 88 to 63.7 KiB per device for
// 0.118 -> 0.163 core: each collection then marks 20,000 goroutine stacks and ~180 MB of heap
// (~0.21 s of CPU) and every reader's stack is grown again after it, beyond the hub's steady CPU
// goal (0.15 core), so it is the operator's choice, not the default.
const DefaultInterval time.Duration = 0

// MemoryInterval is the interval that meets 64 KiB per connected device at 10,000 agents
// (hub serve --gc-interval 5s).
const MemoryInterval = 5 * time.Second
