package systemtest

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/driftline/driftline/internal/testhelp"
)

// newStatefulCluster is three nodes started the way deploy/kubernetes/hub.yaml starts its pods:
// one shared admin token file, hub1 (pod 0) with --peers naming the others, hub2 and hub3 with
// --join hub1; extra goes to every node.
func newStatefulCluster(t *testing.T, extra ...string) (*cluster, func(h *hub)) {
	c := emptyCluster(t)
	tokFile := filepath.Join(c.base, "admin-token")
	c.token = "dl_bootstrap_" + strings.Repeat("p", 32)
	if err := os.WriteFile(tokFile, []byte(c.token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"hub1", "hub2", "hub3"} {
		c.hubs = append(c.hubs, c.newHub(id))
	}
	start := func(h *hub) {
		h.Args = append([]string{"--admin-token-file", tokFile}, extra...)
		if h == c.hubs[0] {
			h.Start(t, binary, "--peers", c.hubs[1].URL()+","+c.hubs[2].URL())
			return
		}
		h.Start(t, binary, "--join", c.hubs[0].URL())
	}
	for _, h := range c.hubs {
		start(h)
	}
	c.waitVoters(3)
	return c, start
}

// TestPodZeroEmptyVolumeRejoins: the node that bootstraps the cluster on first start (pod 0)
// comes back with an empty data dir and the same command line. It finds its peers in a cluster
// and joins it as the same member, instead of bootstrapping a second, empty cluster (split brain):
// afterwards there is one cluster of three voters and pod 0 serves what was written before.
func TestPodZeroEmptyVolumeRejoins(t *testing.T) {
	c, start := newStatefulCluster(t)
	if code, b := c.do(c.hubs[1], http.MethodPost, "/api/v1/datasets", map[string]string{"name": "before-loss"}); code != http.StatusCreated {
		t.Fatalf("write: %d %s", code, b)
	}
	c.waitSame(c.hubs)

	c.kill(c.hubs[0])
	if err := os.RemoveAll(c.hubs[0].Dir); err != nil {
		t.Fatal(err)
	}
	c.hubs[0].Dir = c.dir("hub1")
	start(c.hubs[0])
	testhelp.WaitFor(t, 90*time.Second, "pod 0 to join the cluster", func() bool {
		return strings.Contains(c.hubs[0].Out.String(), "joined the cluster")
	})
	if !strings.Contains(c.hubs[0].Out.String(), "joining it instead of bootstrapping") {
		t.Error("pod 0's log does not say it joined instead of bootstrapping")
	}
	c.waitVoters(3)
	c.waitSame(c.hubs)
	if !c.datasets(c.hubs[0])["before-loss"] {
		t.Fatal("pod 0 does not hold the data written before its volume was lost")
	}
	// One cluster: every node names the same leader, and a write through pod 0 reaches the others.
	lead := c.leader(c.hubs)
	if lead == nil {
		t.Fatal("no leader")
	}
	for _, h := range c.hubs {
		st, ok := c.status(h)
		if !ok || st.Leader == nil || st.Leader.ID != lead.ID || len(st.Nodes) != 3 {
			t.Fatalf("%s sees %+v, want leader %s and 3 nodes", h.ID, st, lead.ID)
		}
	}
	if code, b := c.do(c.hubs[0], http.MethodPost, "/api/v1/datasets", map[string]string{"name": "after-rejoin"}); code != http.StatusCreated {
		t.Fatalf("write through pod 0: %d %s", code, b)
	}
	testhelp.WaitFor(t, 20*time.Second, "the write through pod 0 on the others", func() bool {
		return c.datasets(c.hubs[1])["after-rejoin"] && c.datasets(c.hubs[2])["after-rejoin"]
	})
}

// TestDeadNodeRemoved: with --dead-node-timeout the leader removes a voter that is gone for good
// (a StatefulSet scaled down, a host lost) once the timeout has passed, so the cluster is two
// voters with a quorum of two, and writes go on.
func TestDeadNodeRemoved(t *testing.T) {
	c, _ := newStatefulCluster(t, "--dead-node-timeout", "10s")
	lead := c.leader(c.hubs)
	if lead == nil {
		t.Fatal("no leader")
	}
	var gone *hub
	var live []*hub
	for _, h := range c.hubs {
		if h != lead && gone == nil {
			gone = h
			continue
		}
		live = append(live, h)
	}
	c.kill(gone)
	killed := time.Now()
	testhelp.WaitFor(t, 90*time.Second, gone.ID+" removed from the configuration", func() bool {
		st, ok := c.status(lead)
		if !ok {
			return false
		}
		for _, n := range st.Nodes {
			if n.ID == gone.ID {
				return false
			}
		}
		return len(st.Nodes) == 2
	})
	if d := time.Since(killed); d < 10*time.Second {
		t.Fatalf("removed after %s, before the 10s timeout", d)
	}
	if code, b := c.do(live[1], http.MethodPost, "/api/v1/datasets", map[string]string{"name": "after-removal"}); code != http.StatusCreated {
		t.Fatalf("write after the removal: %d %s", code, b)
	}
	c.waitSame(live)
	if !strings.Contains(lead.Out.String(), "removed a dead node") {
		t.Error("the leader's log does not say it removed the dead node")
	}
	code, b := c.do(lead, http.MethodGet, "/metrics", nil)
	if code != http.StatusOK || !strings.Contains(string(b), "driftline_hub_raft_dead_nodes_removed_total 1") {
		t.Errorf("metric after one removal: %d", code)
	}
}
