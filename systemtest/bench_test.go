package systemtest

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"
)

// BenchmarkAPIWrites measures registry writes (tag sets on one model version, small values)
// through the HTTP API of real hub processes with fsync on: 1 and 3 nodes, 1, 16 and 64
// concurrent clients spread over every node (followers forward to the leader; with
// DRIFTLINE_BENCH_LEADER_ONLY set, every client writes to the leader). It reports writes/s, p50
// and p99 latency.
func BenchmarkAPIWrites(b *testing.B) {
	for _, nodes := range []int{1, 3} {
		for _, clients := range []int{1, 16, 64} {
			b.Run(fmt.Sprintf("nodes=%d/clients=%d", nodes, clients), func(b *testing.B) {
				c := newBenchCluster(b, nodes)
				lead := c.leader(c.hubs)
				if code, body := c.do(lead, http.MethodPost, "/api/v1/models", map[string]string{"name": "m"}); code != http.StatusCreated {
					b.Fatalf("create model: %d %s", code, body)
				}
				// A version to tag: register it with a tiny artifact through the follower path.
				if code, body := c.uploadTiny(lead, "m"); code != http.StatusCreated {
					b.Fatalf("push: %d %s", code, body)
				}
				per := max(b.N, 200) / clients
				lat := make([][]time.Duration, clients)
				var wg sync.WaitGroup
				if dir := os.Getenv("DRIFTLINE_PROFILE_DIR"); dir != "" {
					// A CPU profile of every node while the writes run.
					for _, h := range c.hubs {
						role := "follower-" + h.ID
						if h == lead {
							role = "leader"
						}
						go func() {
							req, _ := http.NewRequest(http.MethodGet, "http://"+h.HTTP+"/debug/pprof/profile?seconds=4", nil)
							req.Header.Set("Authorization", "Bearer "+c.token) // profiles are admin-only
							res, err := client.Do(req)
							if err != nil {
								return
							}
							defer res.Body.Close()
							f, _ := os.Create(filepath.Join(dir, fmt.Sprintf("%s-%d-%d.prof", role, nodes, clients)))
							io.Copy(f, res.Body)
							f.Close()
						}()
					}
				}
				b.ResetTimer()
				start := time.Now()
				for w := 0; w < clients; w++ {
					wg.Add(1)
					go func(w int) {
						defer wg.Done()
						for i := 0; i < per; i++ {
							h := c.hubs[(w+i)%len(c.hubs)]
							if os.Getenv("DRIFTLINE_BENCH_LEADER_ONLY") != "" {
								h = lead
							}
							t0 := time.Now()
							code, body := c.do(h, http.MethodPut, "/api/v1/models/m/versions/1/tags",
								map[string]any{"tags": map[string]string{fmt.Sprintf("w%d", w): fmt.Sprint(i)}})
							if code != http.StatusOK {
								b.Errorf("tag write: %d %s", code, body)
								return
							}
							lat[w] = append(lat[w], time.Since(t0))
						}
					}(w)
				}
				wg.Wait()
				elapsed := time.Since(start)
				b.StopTimer()
				var all []time.Duration
				for _, l := range lat {
					all = append(all, l...)
				}
				sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
				if len(all) == 0 {
					b.Fatal("no writes")
				}
				b.ReportMetric(float64(len(all))/elapsed.Seconds(), "writes/s")
				b.ReportMetric(float64(all[len(all)/2].Microseconds())/1000, "p50-ms")
				b.ReportMetric(float64(all[len(all)*99/100].Microseconds())/1000, "p99-ms")
			})
		}
	}
}
