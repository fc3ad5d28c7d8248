// Package systemtest holds the tests that span both binaries (as rqlite's system_test/). This
// package runs real `driftline hub serve` processes on loopback and checks cluster
// behaviour from the outside: writes through followers, a leader killed with SIGKILL under load,
// a restarted node catching up, and membership changes.
package systemtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/driftline/driftline/internal/testhelp"
)

var binary, agentBinary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "driftline-systemtest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "driftline")
	build := exec.Command("go", "build", "-o", binary, "github.com/driftline/driftline/hub/cmd/driftline")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build driftline:", err)
		os.Exit(1)
	}
	agentBinary = filepath.Join(dir, "driftline-agent")
	build = exec.Command("go", "build", "-o", agentBinary, "github.com/driftline/driftline/agent/cmd/driftline-agent")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build driftline-agent:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func freePort(t testing.TB) string {
	return testhelp.FreeAddr(t)
}

// hub is one `driftline hub serve` process.
type hub struct {
	id, dir, http, raft string
	// mqtt is the embedded broker's address, empty when the node runs without one.
	mqtt string
	cmd  *exec.Cmd
	log  *syncBuffer
	// exited is closed when the process has been waited for.
	exited chan struct{}
}

// syncBuffer collects a process's output for the test (testhelp.SyncBuffer).
type syncBuffer = testhelp.SyncBuffer

type cluster struct {
	t testing.TB
	// base holds the nodes' data dirs; it is removed after every process has stopped.
	base  string
	hubs  []*hub
	token string
}

func (c *cluster) start(h *hub, join string) {
	c.t.Helper()
	args := []string{"hub", "serve", "--node-id", h.id, "--data", h.dir, "--http", h.http, "--raft", h.raft, "--mqtt", h.mqtt}
	if join != "" {
		args = append(args, "--join", join, "--join-token", c.token)
	}
	// A node restarted on its addresses right after a kill may find one still held for a moment
	// by the dead process's sockets: wait until each can be bound again.
	for _, addr := range []string{h.http, h.raft, h.mqtt} {
		if addr == "" {
			continue
		}
		waitFor(c.t, 30*time.Second, h.id+"'s address "+addr+" to be free", func() bool {
			l, err := net.Listen("tcp", addr)
			if err != nil {
				return false
			}
			l.Close()
			return true
		})
	}
	h.cmd = exec.Command(binary, args...)
	if h.log == nil {
		h.log = &syncBuffer{}
	}
	h.cmd.Stdout, h.cmd.Stderr = h.log, h.log
	h.cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + h.dir}
	if os.Getenv("DRIFTLINE_PROFILE_DIR") != "" {
		h.cmd.Env = append(h.cmd.Env, "DRIFTLINE_PPROF=1")
	}
	if err := h.cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	h.exited = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { cmd.Wait(); close(done) }(h.cmd, h.exited)
}

// kill ends the process with SIGKILL (no clean shutdown) and waits for it.
func (c *cluster) kill(h *hub) {
	if h.cmd != nil {
		h.cmd.Process.Signal(syscall.SIGKILL)
		<-h.exited
		h.cmd = nil
	}
}

// stop ends the process with SIGTERM, as systemd would, and checks it exits within 15 s.
func (c *cluster) stop(h *hub) {
	if h.cmd == nil {
		return
	}
	h.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-h.exited:
	case <-time.After(15 * time.Second):
		c.t.Errorf("%s did not exit within 15 s of SIGTERM", h.id)
		h.cmd.Process.Signal(syscall.SIGQUIT) // a goroutine dump into its log
		select {
		case <-h.exited:
		case <-time.After(2 * time.Second):
		}
		c.kill(h)
	}
	h.cmd = nil
}

func newCluster(t *testing.T, n int) *cluster { return startCluster(t, n) }

// newBenchCluster starts a cluster for a benchmark.
func newBenchCluster(b *testing.B, n int) *cluster { return startCluster(b, n) }

func startCluster(t testing.TB, n int) *cluster { return startClusterWith(t, n, false) }

// startClusterWith starts n hubs; with mqtt each runs its embedded broker on a free port.
func startClusterWith(t testing.TB, n int, mqtt bool) *cluster {
	t.Helper()
	// The temp dir is made before the cleanup that stops the processes, so it is removed after
	// them (cleanups run last-in first-out): a hub whose data dir vanishes cannot shut down.
	c := &cluster{t: t, base: t.TempDir()}
	t.Cleanup(func() {
		for _, h := range c.hubs {
			start := time.Now()
			c.stop(h)
			t.Logf("%s stopped in %s", h.id, time.Since(start).Round(time.Millisecond))
			if t.Failed() {
				t.Logf("log of %s:\n%s", h.id, tail(h.log.String(), 6000))
			}
		}
	})
	for i := 0; i < n; i++ {
		h := &hub{id: fmt.Sprintf("hub%d", i+1), dir: c.dir(fmt.Sprintf("hub%d", i+1)), http: freePort(t), raft: freePort(t)}
		if mqtt {
			h.mqtt = freePort(t)
		}
		c.hubs = append(c.hubs, h)
	}
	c.start(c.hubs[0], "")
	waitFor(t, 20*time.Second, "admin token", func() bool {
		b, err := os.ReadFile(filepath.Join(c.hubs[0].dir, "admin.token"))
		c.token = strings.TrimSpace(string(b))
		return err == nil && c.token != ""
	})
	for _, h := range c.hubs[1:] {
		c.start(h, "http://"+c.hubs[0].http)
	}
	c.waitVoters(n)
	return c
}

func (c *cluster) dir(name string) string {
	d := filepath.Join(c.base, name)
	if err := os.MkdirAll(d, 0o700); err != nil {
		c.t.Fatal(err)
	}
	return d
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	testhelp.WaitFor(t, d, what, cond)
}

var client = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 128}}

// do sends one request and returns the status and body (status 0 when the node did not answer).
func (c *cluster) do(h *hub, method, path string, body any) (int, []byte) {
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, "http://"+h.http+path, r)
	req.Header.Set("Authorization", "Bearer "+c.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := client.Do(req)
	if err != nil {
		return 0, nil
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, b
}

type clusterStatus struct {
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

func (c *cluster) status(h *hub) (clusterStatus, bool) {
	var st clusterStatus
	code, b := c.do(h, http.MethodGet, "/api/v1/cluster", nil)
	if code != http.StatusOK || json.Unmarshal(b, &st) != nil {
		return st, false
	}
	return st, true
}

func (c *cluster) waitVoters(n int) {
	c.t.Helper()
	waitFor(c.t, 60*time.Second, fmt.Sprintf("%d voters", n), func() bool {
		st, ok := c.status(c.hubs[0])
		voters := 0
		for _, nd := range st.Nodes {
			if nd.Voter {
				voters++
			}
		}
		return ok && voters == n
	})
}

func (c *cluster) leader(live []*hub) *hub {
	for _, h := range live {
		if st, ok := c.status(h); ok && st.Leader != nil {
			for _, x := range live {
				if x.id == st.Leader.ID {
					return x
				}
			}
		}
	}
	return nil
}

func (c *cluster) datasets(h *hub) map[string]bool {
	out := map[string]bool{}
	cursor := ""
	for {
		code, b := c.do(h, http.MethodGet, "/api/v1/datasets?limit=1000&cursor="+cursor, nil)
		if code != http.StatusOK {
			c.t.Fatalf("list datasets on %s: %d %s", h.id, code, b)
		}
		var page struct {
			Items []struct {
				Name string `json:"name"`
			} `json:"items"`
			NextCursor *string `json:"next_cursor"`
		}
		json.Unmarshal(b, &page)
		for _, d := range page.Items {
			out[d.Name] = true
		}
		if page.NextCursor == nil {
			return out
		}
		cursor = *page.NextCursor
	}
}

// waitSame waits until every live node applied as far as the leader committed.
func (c *cluster) waitSame(live []*hub) {
	c.t.Helper()
	waitFor(c.t, 30*time.Second, "nodes to converge", func() bool {
		var want uint64
		for _, h := range live {
			st, ok := c.status(h)
			if !ok {
				return false
			}
			want = max(want, st.CommitIndex)
		}
		for _, h := range live {
			st, _ := c.status(h)
			if st.AppliedIndex < want {
				return false
			}
		}
		return true
	})
}

func TestWriteThroughFollower(t *testing.T) {
	c := newCluster(t, 3)
	lead := c.leader(c.hubs)
	var follower *hub
	for _, h := range c.hubs {
		if h != lead {
			follower = h
		}
	}
	if code, b := c.do(follower, http.MethodPost, "/api/v1/datasets", map[string]string{"name": "via-follower"}); code != http.StatusCreated {
		t.Fatalf("write through follower: %d %s", code, b)
	}
	c.waitSame(c.hubs)
	for _, h := range c.hubs {
		if !c.datasets(h)["via-follower"] {
			t.Fatalf("%s lacks the write", h.id)
		}
	}
}

func TestLeaderKilledUnderLoad(t *testing.T) {
	c := newCluster(t, 3)
	old := c.leader(c.hubs)
	if old == nil {
		t.Fatal("no leader")
	}
	var live []*hub
	for _, h := range c.hubs {
		if h != old {
			live = append(live, h)
		}
	}
	var (
		mu    sync.Mutex
		acked []string
		wg    sync.WaitGroup
		stop  = make(chan struct{})
	)
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				name := fmt.Sprintf("w%02d-%04d", w, n)
				// Each client spreads its writes over every node; followers forward to the leader.
				h := c.hubs[(w+n)%len(c.hubs)]
				for attempt := 0; attempt < 50; attempt++ {
					code, _ := c.do(h, http.MethodPost, "/api/v1/datasets", map[string]string{"name": name})
					if code == http.StatusCreated || code == http.StatusConflict {
						if code == http.StatusCreated {
							mu.Lock()
							acked = append(acked, name)
							mu.Unlock()
						}
						break
					}
					h = live[(attempt+w)%len(live)]
					time.Sleep(50 * time.Millisecond)
				}
			}
		}(w)
	}
	time.Sleep(1500 * time.Millisecond) // let load build up before the kill
	killedAt := time.Now()
	c.kill(old)
	var newLeader *hub
	waitFor(t, 15*time.Second, "a new leader", func() bool {
		newLeader = c.leader(live)
		return newLeader != nil
	})
	t.Logf("new leader %s after %s", newLeader.id, time.Since(killedAt).Round(10*time.Millisecond))
	time.Sleep(1500 * time.Millisecond) // writes go on against the new leader
	close(stop)
	wg.Wait()
	c.waitSame(live)
	mu.Lock()
	defer mu.Unlock()
	if len(acked) < 50 {
		t.Fatalf("only %d writes acknowledged", len(acked))
	}
	for _, h := range live {
		have := c.datasets(h)
		for _, name := range acked {
			if !have[name] {
				t.Fatalf("acknowledged write %s missing on %s", name, h.id)
			}
		}
	}
	t.Logf("%d acknowledged writes present on every live node", len(acked))
	// The killed node comes back from its disk and catches up.
	c.start(old, "")
	all := append(live, old)
	c.waitSame(all)
	have := c.datasets(old)
	for _, name := range acked {
		if !have[name] {
			t.Fatalf("restarted %s lacks %s", old.id, name)
		}
	}
}

func TestRemoveAndReAdd(t *testing.T) {
	c := newCluster(t, 3)
	lead := c.leader(c.hubs)
	var gone *hub
	for _, h := range c.hubs {
		if h != lead {
			gone = h
			break
		}
	}
	if code, b := c.do(lead, http.MethodDelete, "/api/v1/cluster/nodes/"+gone.id, nil); code != http.StatusOK {
		t.Fatalf("remove: %d %s", code, b)
	}
	c.kill(gone)
	waitFor(t, 10*time.Second, "two nodes", func() bool {
		st, ok := c.status(lead)
		return ok && len(st.Nodes) == 2
	})
	if code, _ := c.do(lead, http.MethodPost, "/api/v1/datasets", map[string]string{"name": "after-remove"}); code != http.StatusCreated {
		t.Fatalf("write on two nodes: %d", code)
	}
	// A fresh node (empty data dir) takes its place.
	gone.dir = c.dir(gone.id + "-again")
	c.start(gone, "http://"+lead.http)
	c.waitVoters(3)
	c.waitSame(c.hubs)
	if !c.datasets(gone)["after-remove"] {
		t.Fatal("re-added node lacks the state")
	}
}

// uploadTiny registers a one-chunk model version.
func (c *cluster) uploadTiny(h *hub, model string) (int, []byte) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	fw, _ := mw.CreateFormFile("artifact", "m.bin")
	fw.Write([]byte("a tiny model"))
	mw.Close()
	req, _ := http.NewRequest(http.MethodPost, "http://"+h.http+"/api/v1/models/"+model+"/versions", &buf)
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	res, err := client.Do(req)
	if err != nil {
		return 0, []byte(err.Error())
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, b
}
