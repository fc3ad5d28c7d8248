package store_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/driftline/driftline/hub/store/storetest"
)

// BenchmarkApply measures writes through Store.Apply on the leader (fsync on: shared/kv Server
// profile) for 1 and 3 nodes and 1, 16 and 64 concurrent clients. It reports ops/s and the p50
// and p99 latency of one Apply in milliseconds.
func BenchmarkApply(b *testing.B) {
	for _, nodes := range []int{1, 3} {
		for _, clients := range []int{1, 16, 64} {
			b.Run(fmt.Sprintf("nodes=%d/clients=%d", nodes, clients), func(b *testing.B) {
				benchApply(b, nodes, clients)
			})
		}
	}
}

func benchApply(b *testing.B, nodes, clients int) {
	c := storetest.MakeCluster(b, nodes, kvProcessor)
	s := c.Leader().Store
	value := string(make([]byte, 100))
	lat := make([][]time.Duration, clients)
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for cl := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				t0 := time.Now()
				if _, err := s.Apply(context.Background(), storetest.Put(fmt.Sprintf("c%d-%d", cl, i%1000), value)); err != nil {
					b.Error(err)
					return
				}
				lat[cl] = append(lat[cl], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	all := slices.Concat(lat...)
	slices.Sort(all)
	if len(all) == 0 {
		return
	}
	ms := func(q float64) float64 {
		return float64(all[min(len(all)-1, int(q*float64(len(all))))].Microseconds()) / 1000
	}
	b.ReportMetric(float64(len(all))/elapsed.Seconds(), "ops/s")
	b.ReportMetric(ms(0.50), "p50-ms")
	b.ReportMetric(ms(0.99), "p99-ms")
}
