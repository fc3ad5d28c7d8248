// Package chaos is Driftline's fault-injection harness: it runs real `driftline hub serve`
// processes on loopback, each behind a TCP proxy on its Raft port (toxiproxy, in process; every
// node advertises its proxy's address, so all Raft traffic to a node crosses it), throws a seeded
// schedule of faults at them (SIGKILL and restart, leader preferred; SIGSTOP/SIGCONT; a node cut
// off or slowed at its proxy) while concurrent clients write and read through random nodes, and
// then checks the recorded history: strong reads and writes linearizable (porcupine), default
// reads never going back in time on one node, every node's state digest equal, the audit chain
// whole on every node, no acknowledged write missing.
//
// TestChaos (chaos_test.go) runs a bounded seeded run under DRIFTLINE_INTEGRATION=1 (make ci)
// and a longer one from `make soak SEED=... DURATION=...`; a failure names the seed that
// replays it. See docs/reliability.md.
package chaos

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/driftline/driftline/internal/hubproc"
)

// Node is one hub process (internal/hubproc) and the proxy in front of its Raft port: the
// process listens for Raft on Raft and advertises AdvertiseRaft, the proxy's address peers dial.
type Node struct {
	*hubproc.Hub
	proxy *toxiproxy.Proxy
}

// Cluster is a running set of nodes.
type Cluster struct {
	t     testing.TB
	bin   string
	Nodes []*Node
	// Token is the admin token; the client sends it.
	Token  string
	client *hubproc.Client
	toxic  *toxiproxy.ApiServer
}

// BuildBinary builds `driftline` into dir and returns its path.
func BuildBinary(dir string) (string, error) { return hubproc.BuildHub(dir) }

// StartCluster starts n nodes (the first bootstraps, the others join) and returns once all are
// voters. Everything stops when the test ends.
func StartCluster(t testing.TB, bin string, n int) *Cluster {
	t.Helper()
	base := t.TempDir()
	c := &Cluster{t: t, bin: bin,
		toxic: toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop())}
	t.Cleanup(func() {
		for _, nd := range c.Nodes {
			nd.Stop(15 * time.Second)
			nd.proxy.Stop()
			if t.Failed() {
				t.Logf("log of %s (tail):\n%s", nd.ID, nd.Out.Tail(4000))
			}
		}
	})
	for i := 1; i <= n; i++ {
		h := hubproc.NewHub(t, base, fmt.Sprintf("hub%d", i))
		h.Args = []string{"--log-level", "warn", "--disk-reserve-bytes", "-1"}
		nd := &Node{Hub: h, proxy: toxiproxy.NewProxy(c.toxic, h.ID, "127.0.0.1:0", h.Raft)}
		if err := nd.proxy.Start(); err != nil {
			t.Fatalf("proxy for %s: %v", nd.ID, err)
		}
		nd.AdvertiseRaft = nd.proxy.Listen
		c.Nodes = append(c.Nodes, nd)
	}
	first := c.Nodes[0]
	first.Start(t, bin)
	c.Token = hubproc.ReadToken(t, first.Dir)
	c.client = hubproc.NewClient(c.Token)
	c.client.HTTP.Timeout = 10 * time.Second
	for i, nd := range c.Nodes[1:] {
		nd.Start(t, bin, "--join", first.URL(), "--join-token", c.Token)
		c.client.WaitVoters(t, nd.Hub, i+2)
	}
	c.client.WaitVoters(t, first.Hub, n)
	return c
}

// Kill ends a node with SIGKILL and waits for it.
func (c *Cluster) Kill(nd *Node) { nd.Hub.Kill() }

// Restart starts a killed node again on its data dir.
func (c *Cluster) Restart(nd *Node) { nd.Start(c.t, c.bin) }

// Pause freezes a node with SIGSTOP; Resume thaws it.
func (c *Cluster) Pause(nd *Node) { nd.Hub.Pause() }

// Resume sends SIGCONT to a paused node.
func (c *Cluster) Resume(nd *Node) { nd.Hub.Resume() }

// Cut black-holes every Raft connection to nd at its proxy (data is held, never delivered, and
// nothing is closed): nobody reaches nd, nd still reaches the others (an asymmetric partition).
func (c *Cluster) Cut(nd *Node) { c.toxicate(nd, "cut", `"type":"timeout","attributes":{"timeout":0}`) }

// Slow delays Raft traffic to nd by latency ± jitter.
func (c *Cluster) Slow(nd *Node, latency, jitter time.Duration) {
	c.toxicate(nd, "slow", fmt.Sprintf(`"type":"latency","attributes":{"latency":%d,"jitter":%d}`, latency.Milliseconds(), jitter.Milliseconds()))
}

func (c *Cluster) toxicate(nd *Node, name, body string) {
	for _, stream := range []string{"upstream", "downstream"} {
		js := fmt.Sprintf(`{"name":%q,"stream":%q,"toxicity":1,%s}`, name+"_"+stream, stream, body)
		if _, err := nd.proxy.Toxics.AddToxicJson(strings.NewReader(js)); err != nil {
			c.t.Errorf("toxic %s on %s: %v", name, nd.ID, err)
		}
	}
}

// Heal removes every toxic from nd's proxy.
func (c *Cluster) Heal(nd *Node) {
	for _, stream := range []string{"upstream", "downstream"} {
		for _, name := range []string{"cut", "slow"} {
			_ = nd.proxy.Toxics.RemoveToxic(context.Background(), name+"_"+stream)
		}
	}
}

// Do sends one API request to nd and returns the status (Refused when the node refused the
// connection, 0 when it did not answer) and body.
func (c *Cluster) Do(nd *Node, method, path string, body any) (int, []byte) {
	return c.client.Do(nd.Hub, method, path, body)
}

// Refused is Do's status when the node refused the connection: the request was never sent.
const Refused = hubproc.Refused

// Status is the part of GET /api/v1/cluster the harness reads.
type Status = hubproc.Status

// Status returns nd's view of the cluster.
func (c *Cluster) Status(nd *Node) (Status, bool) { return c.client.Status(nd.Hub) }

// Leader returns the node the running nodes agree leads, or nil.
func (c *Cluster) Leader() *Node {
	hubs := make([]*hubproc.Hub, len(c.Nodes))
	for i, nd := range c.Nodes {
		hubs[i] = nd.Hub
	}
	l := c.client.Leader(hubs)
	for _, nd := range c.Nodes {
		if nd.Hub == l {
			return nd
		}
	}
	return nil
}

// client is the HTTP client of the workload's own requests (multipart uploads).
func (c *Cluster) httpClient() *http.Client { return c.client.HTTP }
