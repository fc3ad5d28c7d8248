// Package chaos is Driftline's fault-injection harness: it runs real `driftline hub serve`
// processes on loopback, each behind a TCP proxy on its Raft port (toxiproxy, in process; every
// node advertises its proxy's address, so all Raft traffic to a node crosses it) and with a proxy
// of its own per peer (it dials each peer through it, --raft-dial-via), throws a seeded
// schedule of faults at them (SIGKILL and restart, leader preferred; SIGSTOP/SIGCONT; a node cut
// off or slowed at its proxy; one link or both directions between two nodes cut while both
// reach the rest, or slowed; a node's fsyncs delayed; a node's wall clock jumped; with agents,
// SIGKILL and restart of one agent process at a random moment), creates, pauses, resumes and
// aborts rollouts and runs real agents (one `firmware-sim fleet --devices 1` process each, fed a
// scenario so that they validate and send numbered reports) while concurrent clients write and
// read through random nodes, and then checks the recorded history: strong reads and writes
// linearizable (porcupine), default reads never going back in time on one node, every node's
// state digest equal, the audit chain whole on every node, no acknowledged write missing, no
// agent running an unapproved version, every agent at its desired version; and for the agents,
// after each kill and at the end, one whole approved model on disk (modelstore.CheckLinks) and
// no numbered report forgotten by the agent that the hub lacks (agenttest.CheckHeld against the
// hub's report cursor), with no hole left in the hub's sequence at the end.
//
// TestChaos (chaos_test.go) runs a bounded seeded run under DRIFTLINE_INTEGRATION=1 (make ci)
// and a longer one from `make soak SEED=... DURATION=...`; a failure names the seed that
// replays it. See docs/reliability.md.
package chaos

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/driftline/driftline/internal/freeport"
	"github.com/driftline/driftline/internal/hubproc"
	"github.com/driftline/driftline/shared/clock"
)

// Node is one hub process (internal/hubproc) and the proxy in front of its Raft port: the
// process listens for Raft on Raft and advertises AdvertiseRaft, the proxy's address peers dial.
type Node struct {
	*hubproc.Hub
	proxy *toxiproxy.Proxy
	// links holds this node's own proxy per peer, by peer id: the node dials the peer's Raft
	// address through it (--raft-dial-via), so one directed link can be cut or slowed alone.
	links map[string]*toxiproxy.Proxy
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
	// fleet, when the run has agents, is killed from too (Fleet.KillAgent).
	fleet *Fleet
}

// BuildBinary builds `driftline` into dir and returns its path.
func BuildBinary(dir string) (string, error) { return hubproc.BuildHub(dir) }

// BuildFleet builds `firmware-sim` (whose fleet mode runs real agents) into dir and returns its
// path.
func BuildFleet(dir string) (string, error) {
	return hubproc.Build(dir, "firmware-sim", "github.com/driftline/driftline/firmware-sim/cmd/firmware-sim")
}

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
			for _, l := range nd.links {
				l.Stop()
			}
			if t.Failed() {
				t.Logf("log of %s (tail):\n%s", nd.ID, nd.Out.Tail(4000))
			}
		}
	})
	for i := 1; i <= n; i++ {
		h := hubproc.NewHub(t, base, fmt.Sprintf("hub%d", i))
		h.Args = []string{"--log-level", "warn", "--disk-reserve-bytes", "-1"}
		h.MQTT = freeport.Addr(t) // the agents connect to every node's broker
		nd := &Node{Hub: h, proxy: toxiproxy.NewProxy(c.toxic, h.ID, "127.0.0.1:0", h.Raft)}
		h.Env = []string{clock.EnvOffsetFile + "=" + nd.clockFile()}
		if err := nd.proxy.Start(); err != nil {
			t.Fatalf("proxy for %s: %v", nd.ID, err)
		}
		nd.AdvertiseRaft = nd.proxy.Listen
		c.Nodes = append(c.Nodes, nd)
	}
	c.startLinks(t)
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

// startLinks gives every node a proxy per peer and makes it dial the peer through it.
func (c *Cluster) startLinks(t testing.TB) {
	for _, from := range c.Nodes {
		from.links = map[string]*toxiproxy.Proxy{}
		for _, to := range c.Nodes {
			if to == from {
				continue
			}
			l := toxiproxy.NewProxy(c.toxic, from.ID+"->"+to.ID, "127.0.0.1:0", to.AdvertiseRaft)
			if err := l.Start(); err != nil {
				t.Fatalf("proxy %s->%s: %v", from.ID, to.ID, err)
			}
			from.links[to.ID] = l
			from.Args = append(from.Args, "--raft-dial-via", to.AdvertiseRaft+"="+l.Listen)
		}
	}
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

// CutLink black-holes the directed link from -> to: the Raft connections from dials to to (its
// requests and their answers) hold their data, while to's own connections to from, and both
// nodes' links to everyone else, work. CutLink(a, b) and CutLink(b, a) partition a from b while
// both reach the rest; one of them alone is an asymmetric partition.
func (c *Cluster) CutLink(from, to *Node) {
	c.toxicateProxy(from.links[to.ID], "cut", `"type":"timeout","attributes":{"timeout":0}`)
}

// SlowLink delays the directed link from -> to by latency ± jitter.
func (c *Cluster) SlowLink(from, to *Node, latency, jitter time.Duration) {
	c.toxicateProxy(from.links[to.ID], "slow", fmt.Sprintf(`"type":"latency","attributes":{"latency":%d,"jitter":%d}`, latency.Milliseconds(), jitter.Milliseconds()))
}

func (c *Cluster) toxicateProxy(p *toxiproxy.Proxy, name, body string) {
	for _, stream := range []string{"upstream", "downstream"} {
		js := fmt.Sprintf(`{"name":%q,"stream":%q,"toxicity":1,%s}`, name+"_"+stream, stream, body)
		if _, err := p.Toxics.AddToxicJson(strings.NewReader(js)); err != nil {
			c.t.Errorf("toxic %s on %s: %v", name, p.Name, err)
		}
	}
}

// SlowDisk delays every fsync, fdatasync and msync of nd's process by delay (strace's fault
// injection, attached to all its threads) until the returned function is called. ok is false,
// and nothing is done, when strace is not installed or cannot attach (make ci-deps installs it).
func (c *Cluster) SlowDisk(nd *Node, delay time.Duration) (undo func(), ok bool) {
	strace, err := exec.LookPath("strace")
	if err != nil {
		return nil, false
	}
	proc := nd.Process()
	if proc == nil {
		return nil, false
	}
	out := &hubproc.Output{}
	s, err := hubproc.Start(out, os.Getenv("HOME"), nil, strace, "-f", "-o", "/dev/null", "-e", "trace=fsync,fdatasync,msync",
		"-e", fmt.Sprintf("inject=fsync,fdatasync,msync:delay_enter=%d", delay.Microseconds()), "-p", fmt.Sprint(proc.Pid()))
	if err != nil {
		return nil, false
	}
	// strace says "Process N attached" (on stderr) once it holds the process: the fault is on
	// from then, not from its start.
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), "attached") {
		select {
		case <-s.Exited():
			c.t.Logf("strace could not attach to %s: %s", nd.ID, out.Tail(500))
			return nil, false
		case <-time.After(10 * time.Millisecond): // polling strace's output for a condition
		}
		if time.Now().After(deadline) {
			s.Kill()
			return nil, false
		}
	}
	return func() {
		s.Signal(syscall.SIGINT) // strace detaches, the node runs on
		select {
		case <-s.Exited():
		case <-time.After(10 * time.Second):
			s.Kill()
		}
		if o := out.String(); strings.Contains(o, "strace: ") && !strings.Contains(o, "detached") {
			c.t.Logf("strace on %s: %s", nd.ID, out.Tail(500))
		}
	}, true
}

// ClockJump sets nd's wall clock to run d ahead of the real one (behind when negative; 0: back
// to the real one), through shared/clock's offset file: the node reads it within 100 ms.
func (c *Cluster) ClockJump(nd *Node, d time.Duration) {
	if err := os.WriteFile(nd.clockFile(), []byte(d.String()), 0o600); err != nil {
		c.t.Errorf("clock jump on %s: %v", nd.ID, err)
	}
}

func (nd *Node) clockFile() string { return filepath.Join(filepath.Dir(nd.Dir), nd.ID+".clock-offset") }

// Heal removes every toxic from nd's proxy and from nd's own links to its peers.
func (c *Cluster) Heal(nd *Node) {
	proxies := []*toxiproxy.Proxy{nd.proxy}
	for _, l := range nd.links {
		proxies = append(proxies, l)
	}
	for _, p := range proxies {
		for _, stream := range []string{"upstream", "downstream"} {
			for _, name := range []string{"cut", "slow"} {
				_ = p.Toxics.RemoveToxic(context.Background(), name+"_"+stream)
			}
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
