// Package chaos is Driftline's fault-injection harness: it runs real `driftline hub serve`
// processes on loopback, each behind a TCP proxy on its Raft port (toxiproxy, in process; every
// node advertises its proxy's address, so all Raft traffic to a node crosses it) and with a proxy
// of its own per peer (it dials each peer through it, --raft-dial-via), throws a seeded
// schedule of faults at them (SIGKILL and restart, leader preferred; SIGSTOP/SIGCONT; a node cut
// off or slowed at its proxy; one link or both directions between two nodes cut while both
// reach the rest, or slowed) while concurrent clients write and read through random nodes, and
// then checks the recorded history: strong reads and writes linearizable (porcupine), default
// reads never going back in time on one node, every node's state digest equal, the audit chain
// whole on every node, no acknowledged write missing.
//
// TestChaos (chaos_test.go) runs a bounded seeded run under DRIFTLINE_INTEGRATION=1 (make ci)
// and a longer one from `make soak SEED=... DURATION=...`; a failure names the seed that
// replays it. See docs/reliability.md.
package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/driftline/driftline/internal/testhelp"
	"github.com/driftline/driftline/shared/clock"
)

// Node is one hub process and the proxy in front of its Raft port.
type Node struct {
	ID, Dir, HTTP string
	// MQTT is the node's embedded broker (agents connect to every node's).
	MQTT string
	// RaftListen is where the process listens for Raft; RaftAdv the proxy address peers dial.
	RaftListen, RaftAdv string
	proxy               *toxiproxy.Proxy
	// links holds this node's own proxy per peer, by peer id: the node dials the peer's Raft
	// address through it (--raft-dial-via), so one directed link can be cut or slowed alone.
	links map[string]*toxiproxy.Proxy

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	paused bool
	out    *syncBuffer
}

// Cluster is a running set of nodes.
type Cluster struct {
	t     testing.TB
	bin   string
	Nodes []*Node
	Token string
	toxic *toxiproxy.ApiServer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.b.Len() > 4<<20 { // keep the tail
		rest := append([]byte(nil), s.b.Bytes()[s.b.Len()-(2<<20):]...)
		s.b.Reset()
		s.b.Write(rest)
	}
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// BuildBinary builds `driftline` into dir and returns its path.
func BuildBinary(dir string) (string, error) {
	bin := filepath.Join(dir, "driftline")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/driftline/driftline/hub/cmd/driftline")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	return bin, cmd.Run()
}

// BuildFleet builds `firmware-sim` (whose fleet mode runs real agents) into dir and returns its
// path.
func BuildFleet(dir string) (string, error) {
	bin := filepath.Join(dir, "firmware-sim")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/driftline/driftline/firmware-sim/cmd/firmware-sim")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	return bin, cmd.Run()
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
			c.stop(nd)
			nd.proxy.Stop()
			for _, l := range nd.links {
				l.Stop()
			}
			if t.Failed() {
				t.Logf("log of %s (tail):\n%s", nd.ID, tail(nd.out.String(), 4000))
			}
		}
	})
	for i := 1; i <= n; i++ {
		nd := &Node{ID: fmt.Sprintf("hub%d", i), Dir: filepath.Join(base, fmt.Sprintf("hub%d", i)),
			HTTP: testhelp.FreeAddr(t), RaftListen: testhelp.FreeAddr(t), MQTT: testhelp.FreeAddr(t), out: &syncBuffer{}}
		nd.proxy = toxiproxy.NewProxy(c.toxic, nd.ID, "127.0.0.1:0", nd.RaftListen)
		if err := nd.proxy.Start(); err != nil {
			t.Fatalf("proxy for %s: %v", nd.ID, err)
		}
		nd.RaftAdv = nd.proxy.Listen
		c.Nodes = append(c.Nodes, nd)
	}
	for _, from := range c.Nodes {
		from.links = map[string]*toxiproxy.Proxy{}
		for _, to := range c.Nodes {
			if to == from {
				continue
			}
			l := toxiproxy.NewProxy(c.toxic, from.ID+"->"+to.ID, "127.0.0.1:0", to.RaftAdv)
			if err := l.Start(); err != nil {
				t.Fatalf("proxy %s->%s: %v", from.ID, to.ID, err)
			}
			from.links[to.ID] = l
		}
	}
	c.start(c.Nodes[0], "")
	testhelp.WaitFor(t, 30*time.Second, "admin token", func() bool {
		b, err := os.ReadFile(filepath.Join(c.Nodes[0].Dir, "admin.token"))
		c.Token = strings.TrimSpace(string(b))
		return err == nil && c.Token != ""
	})
	for _, nd := range c.Nodes[1:] {
		c.start(nd, "http://"+c.Nodes[0].HTTP)
		c.waitVoters(nd, 1+len(c.running()))
	}
	c.waitVoters(c.Nodes[0], n)
	return c
}

func (c *Cluster) running() []*Node {
	var out []*Node
	for _, nd := range c.Nodes[1:] {
		nd.mu.Lock()
		if nd.cmd != nil {
			out = append(out, nd)
		}
		nd.mu.Unlock()
	}
	return out
}

func (c *Cluster) start(nd *Node, join string) {
	c.t.Helper()
	if err := os.MkdirAll(nd.Dir, 0o700); err != nil {
		c.t.Fatal(err)
	}
	args := []string{"hub", "serve", "--node-id", nd.ID, "--data", nd.Dir, "--http", nd.HTTP, "--raft", nd.RaftListen,
		"--advertise-raft", nd.RaftAdv, "--mqtt", nd.MQTT, "--log-level", "warn", "--disk-reserve-bytes", "-1"}
	if join != "" {
		args = append(args, "--join", join, "--join-token", c.Token)
	}
	for _, to := range c.Nodes {
		if l := nd.links[to.ID]; l != nil {
			args = append(args, "--raft-dial-via", to.RaftAdv+"="+l.Listen)
		}
	}
	cmd := exec.Command(c.bin, args...)
	cmd.Stdout, cmd.Stderr = nd.out, nd.out
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + nd.Dir, clock.EnvOffsetFile + "=" + nd.clockFile()}
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	nd.mu.Lock()
	nd.cmd, nd.exited, nd.paused = cmd, done, false
	nd.mu.Unlock()
}

// stop ends a node with SIGTERM (SIGKILL after 15 s), resuming it first if paused.
func (c *Cluster) stop(nd *Node) {
	nd.mu.Lock()
	cmd, done, paused := nd.cmd, nd.exited, nd.paused
	nd.cmd, nd.paused = nil, false
	nd.mu.Unlock()
	if cmd == nil {
		return
	}
	if paused {
		_ = cmd.Process.Signal(syscall.SIGCONT)
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-done
	}
}

// Kill ends a node with SIGKILL and waits for it.
func (c *Cluster) Kill(nd *Node) {
	nd.mu.Lock()
	cmd, done := nd.cmd, nd.exited
	nd.cmd, nd.paused = nil, false
	nd.mu.Unlock()
	if cmd != nil {
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-done
	}
}

// Restart starts a killed node again on its data dir.
func (c *Cluster) Restart(nd *Node) { c.start(nd, "") }

// Running reports whether the node's process runs (paused or not).
func (nd *Node) Running() bool {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	return nd.cmd != nil
}

// Pause freezes a node with SIGSTOP; Resume thaws it.
func (c *Cluster) Pause(nd *Node) { c.signal(nd, syscall.SIGSTOP, true) }

// Resume sends SIGCONT to a paused node.
func (c *Cluster) Resume(nd *Node) { c.signal(nd, syscall.SIGCONT, false) }

func (c *Cluster) signal(nd *Node, sig syscall.Signal, paused bool) {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	if nd.cmd != nil {
		_ = nd.cmd.Process.Signal(sig)
		nd.paused = paused
	}
}

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
	nd.mu.Lock()
	cmd := nd.cmd
	nd.mu.Unlock()
	if cmd == nil {
		return nil, false
	}
	us := delay.Microseconds()
	s := exec.Command(strace, "-f", "-qq", "-o", "/dev/null", "-e", "trace=fsync,fdatasync,msync",
		"-e", fmt.Sprintf("inject=fsync,fdatasync,msync:delay_enter=%d", us), "-p", fmt.Sprint(cmd.Process.Pid))
	var out syncBuffer
	s.Stdout, s.Stderr = &out, &out
	if err := s.Start(); err != nil {
		return nil, false
	}
	done := make(chan struct{})
	go func() { _ = s.Wait(); close(done) }()
	return func() {
		_ = s.Process.Signal(syscall.SIGINT) // strace detaches, the node runs on
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = s.Process.Kill()
			<-done
		}
		if o := strings.TrimSpace(out.String()); o != "" {
			c.t.Logf("strace on %s: %s", nd.ID, tail(o, 500))
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
				_ = p.Toxics.RemoveToxic(bgctx, name+"_"+stream)
			}
		}
	}
}

var bgctx = context.Background()

var client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

// Do sends one API request to nd and returns the status (0 when the node did not answer) and body.
func (c *Cluster) Do(nd *Node, method, path string, body any) (int, []byte) {
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, "http://"+nd.HTTP+path, r)
	req.Header.Set("Authorization", "Bearer "+c.Token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := client.Do(req)
	if errors.Is(err, syscall.ECONNREFUSED) {
		return Refused, []byte(err.Error())
	}
	if err != nil {
		return 0, []byte(err.Error())
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, b
}

// Refused is Do's status when the node refused the connection: the request was never sent.
const Refused = -1

// Status is the part of GET /api/v1/cluster the harness reads.
type Status struct {
	Leader *struct {
		ID string `json:"id"`
	} `json:"leader"`
	Nodes []struct {
		ID    string `json:"id"`
		Voter bool   `json:"voter"`
	} `json:"nodes"`
	AppliedIndex uint64 `json:"applied_index"`
	CommitIndex  uint64 `json:"commit_index"`
}

// Status returns nd's view of the cluster.
func (c *Cluster) Status(nd *Node) (Status, bool) {
	var st Status
	code, b := c.Do(nd, http.MethodGet, "/api/v1/cluster", nil)
	return st, code == http.StatusOK && json.Unmarshal(b, &st) == nil
}

// Leader returns the node the running nodes agree leads, or nil.
func (c *Cluster) Leader() *Node {
	for _, nd := range c.Nodes {
		if !nd.Running() {
			continue
		}
		if st, ok := c.Status(nd); ok && st.Leader != nil {
			for _, x := range c.Nodes {
				if x.ID == st.Leader.ID {
					return x
				}
			}
		}
	}
	return nil
}

func (c *Cluster) waitVoters(nd *Node, n int) {
	c.t.Helper()
	testhelp.WaitFor(c.t, 60*time.Second, fmt.Sprintf("%d voters", n), func() bool {
		st, ok := c.Status(nd)
		v := 0
		for _, x := range st.Nodes {
			if x.Voter {
				v++
			}
		}
		return ok && v == n
	})
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}
