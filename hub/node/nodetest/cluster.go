package nodetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/driftline/driftline/hub/node"
	"github.com/driftline/driftline/hub/store"
	"github.com/driftline/driftline/hub/store/storetest"
	"github.com/driftline/driftline/internal/testhelp"
)

// Cluster is a set of in-process nodes joined into one Raft cluster.
type Cluster struct {
	t testing.TB
	// Hubs are the nodes in start order (n1 bootstrapped the cluster); a killed node stays in
	// the list with Live false.
	Hubs  []*Hub
	token string
}

// StartCluster starts n nodes, each with its embedded broker unless an option says otherwise: n1
// bootstraps, the others join it with the admin token, and Cluster returns once all n are
// voters. Options apply to every node (after the node id and ports are set).
func StartCluster(t testing.TB, n int, opts ...Option) *Cluster {
	t.Helper()
	c := &Cluster{t: t}
	first := Start(t, append([]Option{nodeID(1)}, opts...)...)
	c.Hubs, c.token = []*Hub{first}, first.Token
	for i := 2; i <= n; i++ {
		cfg := Config(t)
		nodeID(i)(&cfg)
		for _, o := range opts {
			o(&cfg)
		}
		cfg.Join, cfg.JoinToken = first.URL(), c.token
		h := start(t, cfg)
		h.Token = c.token
		c.Hubs = append(c.Hubs, h)
	}
	c.WaitVoters(first, n)
	return c
}

func nodeID(i int) Option { return func(c *node.Config) { c.NodeID = fmt.Sprintf("n%d", i) } }

// WaitVoters waits until h's view of the configuration has n voters.
func (c *Cluster) WaitVoters(h *Hub, n int) {
	c.t.Helper()
	testhelp.WaitFor(c.t, 2*WaitTimeout, fmt.Sprintf("%d voters", n), func() bool {
		voters := 0
		for _, nd := range h.Store().Status().Nodes {
			if nd.Voter {
				voters++
			}
		}
		return voters == n
	})
}

// Live reports whether h runs (it was not killed, or was restarted since).
func (h *Hub) Live() bool { return h.Node != nil }

// LiveHubs returns the running nodes.
func (c *Cluster) LiveHubs() []*Hub {
	var out []*Hub
	for _, h := range c.Hubs {
		if h.Live() {
			out = append(out, h)
		}
	}
	return out
}

// Leader waits until exactly one live node leads and every live member agrees, and returns it.
func (c *Cluster) Leader() *Hub {
	c.t.Helper()
	return c.WaitForNewLeader(nil)
}

// WaitForNewLeader waits until a node other than old leads (and every live member agrees), and
// returns it.
func (c *Cluster) WaitForNewLeader(old *Hub) *Hub {
	c.t.Helper()
	var leader *Hub
	testhelp.WaitFor(c.t, WaitTimeout, "a single leader other than the old one", func() bool {
		leader = c.currentLeader()
		return leader != nil && leader != old
	})
	return leader
}

// currentLeader is the live node that leads with every live member agreeing (nil otherwise).
func (c *Cluster) currentLeader() *Hub {
	live := c.LiveHubs()
	if i := storetest.AgreedLeader(stores(live)); i >= 0 {
		return live[i]
	}
	return nil
}

func stores(hubs []*Hub) []*store.Store {
	out := make([]*store.Store, len(hubs))
	for i, h := range hubs {
		out[i] = h.Store()
	}
	return out
}

// Followers returns the live nodes other than the leader.
func (c *Cluster) Followers() []*Hub {
	c.t.Helper()
	l := c.Leader()
	var out []*Hub
	for _, h := range c.LiveHubs() {
		if h != l {
			out = append(out, h)
		}
	}
	return out
}

// Kill stops h the way a crash does as far as Raft sees it (the store aborts with no leadership
// transfer), then closes the rest of the node so its ports and files are free for Restart.
func (c *Cluster) Kill(h *Hub) {
	c.t.Helper()
	if !h.Live() {
		return
	}
	if err := h.Store().Abort(); err != nil {
		c.t.Logf("abort %s: %v", h.ID(), err)
	}
	h.Node.Close()
	h.Node = nil
}

// Restart starts a killed node again from its data dir, on its old addresses.
func (c *Cluster) Restart(h *Hub) {
	c.t.Helper()
	if h.Live() {
		c.t.Fatalf("restart %s: still running", h.cfg.NodeID)
	}
	cfg := h.cfg
	cfg.Join, cfg.JoinToken = "", ""
	h.Node = start(c.t, cfg).Node
}

// WaitReplicated waits until every live node has applied the leader's commit index.
func (c *Cluster) WaitReplicated() {
	c.t.Helper()
	testhelp.WaitFor(c.t, WaitTimeout, "all nodes to apply the leader's log", func() bool {
		return storetest.Replicated(stores(c.LiveHubs()))
	})
}

// EnsureSame waits until every live node has applied the leader's log and holds the same
// replicated state (keys and values under store.FSMPrefix), failing the test with the first
// difference when they stay apart.
func (c *Cluster) EnsureSame() {
	c.t.Helper()
	deadline := time.Now().Add(WaitTimeout)
	for {
		c.WaitReplicated()
		live := c.LiveHubs()
		ids, dbs := make([]string, len(live)), make([]*badger.DB, len(live))
		for i, h := range live {
			ids[i], dbs[i] = h.ID(), h.Store().DB()
		}
		diff := storetest.StateDiff(c.t, ids, dbs)
		if diff == "" {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("node states differ after %v: %s", WaitTimeout, diff)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
