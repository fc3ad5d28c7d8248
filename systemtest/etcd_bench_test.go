package systemtest

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/driftline/driftline/internal/freeport"
	"github.com/driftline/driftline/internal/testhelp"
)

// BenchmarkEtcdBaseline runs the write loop of BenchmarkAPIWrites against a real etcd cluster on
// the same machine (etcd's JSON gateway, /v3/kv/put, one small key per client, fsync on), as the
// baseline issue 2 names. It skips when the etcd binary is missing (Debian: etcd-server).
func BenchmarkEtcdBaseline(b *testing.B) {
	bin, err := exec.LookPath("etcd")
	if err != nil {
		b.Skip("etcd not installed (apt-get install etcd-server): no baseline")
	}
	for _, nodes := range []int{1, 3} {
		for _, clients := range []int{1, 16, 64} {
			b.Run(fmt.Sprintf("nodes=%d/clients=%d", nodes, clients), func(b *testing.B) {
				urls := startEtcd(b, bin, nodes)
				per := max(b.N, 200) / clients
				lat := make([][]time.Duration, clients)
				var wg sync.WaitGroup
				b.ResetTimer()
				start := time.Now()
				for w := 0; w < clients; w++ {
					wg.Add(1)
					go func(w int) {
						defer wg.Done()
						key := base64.StdEncoding.EncodeToString([]byte(fmt.Sprintf("tags/w%d", w)))
						for i := 0; i < per; i++ {
							body, _ := json.Marshal(map[string]string{"key": key, "value": base64.StdEncoding.EncodeToString([]byte(fmt.Sprint(i)))})
							t0 := time.Now()
							res, err := client.Post(urls[(w+i)%len(urls)]+"/v3/kv/put", "application/json", bytes.NewReader(body))
							if err != nil {
								b.Errorf("put: %v", err)
								return
							}
							res.Body.Close()
							if res.StatusCode != http.StatusOK {
								b.Errorf("put: %s", res.Status)
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
				if len(all) == 0 {
					b.Fatal("no writes")
				}
				sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
				b.ReportMetric(float64(len(all))/elapsed.Seconds(), "writes/s")
				b.ReportMetric(float64(all[len(all)/2].Microseconds())/1000, "p50-ms")
				b.ReportMetric(float64(all[len(all)*99/100].Microseconds())/1000, "p99-ms")
			})
		}
	}
}

// startEtcd starts an n-member etcd cluster on loopback and returns its client URLs.
func startEtcd(b *testing.B, bin string, n int) []string {
	base := b.TempDir()
	var peers, clients []string
	for i := 0; i < n; i++ {
		peers = append(peers, "http://"+freeport.Addr(b))
		clients = append(clients, "http://"+freeport.Addr(b))
	}
	var initial []string
	for i, p := range peers {
		initial = append(initial, fmt.Sprintf("e%d=%s", i, p))
	}
	var cmds []*exec.Cmd
	b.Cleanup(func() {
		for _, c := range cmds {
			c.Process.Signal(syscall.SIGKILL)
			c.Wait()
		}
	})
	for i := 0; i < n; i++ {
		cmd := exec.Command(bin, "--name", fmt.Sprintf("e%d", i), "--data-dir", fmt.Sprintf("%s/e%d", base, i),
			"--listen-peer-urls", peers[i], "--initial-advertise-peer-urls", peers[i],
			"--listen-client-urls", clients[i], "--advertise-client-urls", clients[i],
			"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-state", "new", "--log-level", "error")
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		cmds = append(cmds, cmd)
	}
	testhelp.WaitFor(b, 30*time.Second, "etcd to accept writes", func() bool {
		res, err := client.Post(clients[0]+"/v3/kv/put", "application/json", strings.NewReader(`{"key":"cmVhZHk=","value":"eQ=="}`))
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == http.StatusOK
	})
	return clients
}
