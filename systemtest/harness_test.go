package systemtest

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/driftline/driftline/internal/freeport"
	"github.com/driftline/driftline/internal/hubproc"
)

// binary and agentBinary are `driftline` and `driftline-agent`, built once by TestMain.
var binary, agentBinary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "driftline-systemtest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if binary, err = hubproc.BuildHub(dir); err == nil {
		agentBinary, err = hubproc.BuildAgent(dir)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// hub is one `driftline hub serve` process (internal/hubproc).
type hub = hubproc.Hub

// cluster is a set of hub processes and the admin token of their cluster.
type cluster struct {
	t testing.TB
	// base holds the nodes' data dirs; it is removed after every process has stopped.
	base  string
	hubs  []*hub
	token string
}

// newHub returns the settings of node id (data dir under the cluster's base, free ports), not
// yet started nor added to the cluster.
func (c *cluster) newHub(id string) *hub { return hubproc.NewHub(c.t, c.base, id) }

// start starts h, joining the node at URL join with the cluster's token unless join is empty.
func (c *cluster) start(h *hub, join string) {
	c.t.Helper()
	if join != "" {
		h.Start(c.t, binary, "--join", join, "--join-token", c.token)
		return
	}
	h.Start(c.t, binary)
}

// kill ends the process with SIGKILL (no clean shutdown) and waits for it.
func (c *cluster) kill(h *hub) { h.Kill() }

// stop ends the process with SIGTERM, as systemd would, and checks it exits within 15 s.
func (c *cluster) stop(h *hub) {
	if !h.Stop(15 * time.Second) {
		c.t.Errorf("%s did not exit within 15 s of SIGTERM", h.ID)
	}
}

func newCluster(t *testing.T, n int) *cluster { return startCluster(t, n) }

// newBenchCluster starts a cluster for a benchmark.
func newBenchCluster(b *testing.B, n int) *cluster { return startCluster(b, n) }

func startCluster(t testing.TB, n int) *cluster { return startClusterWith(t, n, false) }

// emptyCluster returns a cluster with no nodes whose nodes are stopped (and their logs shown when
// the test failed) when the test ends.
func emptyCluster(t testing.TB) *cluster {
	// The temp dir is made before the cleanup that stops the processes, so it is removed after
	// them (cleanups run last-in first-out): a hub whose data dir vanishes cannot shut down.
	c := &cluster{t: t, base: t.TempDir()}
	t.Cleanup(func() {
		for _, h := range c.hubs {
			start := time.Now()
			c.stop(h)
			t.Logf("%s stopped in %s", h.ID, time.Since(start).Round(time.Millisecond))
			if t.Failed() {
				t.Logf("log of %s:\n%s", h.ID, h.Out.Tail(6000))
			}
		}
	})
	return c
}

// startClusterWith starts n hubs; with mqtt each runs its embedded broker on a free port.
func startClusterWith(t testing.TB, n int, mqtt bool) *cluster {
	t.Helper()
	c := emptyCluster(t)
	for i := 0; i < n; i++ {
		h := c.newHub(fmt.Sprintf("hub%d", i+1))
		if mqtt {
			h.MQTT = freeport.Addr(t)
		}
		c.hubs = append(c.hubs, h)
	}
	c.start(c.hubs[0], "")
	c.token = hubproc.ReadToken(t, c.hubs[0].Dir)
	for _, h := range c.hubs[1:] {
		c.start(h, c.hubs[0].URL())
	}
	c.waitVoters(n)
	return c
}

// dir makes and returns a directory under the cluster's base.
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

// client is the API client of every cluster; its token is set per request.
var client = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 128}}

// api returns a hubproc client with the cluster's token.
func (c *cluster) api() *hubproc.Client { return &hubproc.Client{Token: c.token, HTTP: client} }

// do sends one request and returns the status and body (status 0 when the node did not answer,
// hubproc.Refused when it refused the connection).
func (c *cluster) do(h *hub, method, path string, body any) (int, []byte) {
	code, b := c.api().Do(h, method, path, body)
	if code <= 0 {
		return 0, nil
	}
	return code, b
}

// clusterStatus is the part of GET /api/v1/cluster the tests read.
type clusterStatus = hubproc.Status

func (c *cluster) status(h *hub) (clusterStatus, bool) { return c.api().Status(h) }

func (c *cluster) waitVoters(n int) {
	c.t.Helper()
	c.api().WaitVoters(c.t, c.hubs[0], n)
}

// leader returns the node of live that the first one answering names as leader, or nil.
func (c *cluster) leader(live []*hub) *hub { return c.api().Leader(live) }
