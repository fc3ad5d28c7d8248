// Package storetest runs in-process hub clusters for tests: real store.Store nodes with real TCP
// raft transports on 127.0.0.1 and on-disk badger databases in temp dirs, like hashicorp/raft's
// testing.go. Every helper fails the test (t.Fatal) rather than returning an error.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/driftline/driftline/hub/store"
	"github.com/driftline/driftline/internal/testhelp"
	"github.com/driftline/driftline/shared/kv"
)

// WaitTimeout bounds every wait of the harness.
const WaitTimeout = 15 * time.Second

// Node is one member of a test cluster.
type Node struct {
	// ID is the raft server id ("n0", "n1", ...).
	ID string
	// Dir holds the node's badger database (Dir/db) and raft snapshots (Dir/raft).
	Dir string
	// RaftAddr is the node's raft address, kept across restarts.
	RaftAddr string
	// HTTPAddr is a made-up API address recorded in the node records.
	HTTPAddr string
	// Store is the running store; nil while the node is down.
	Store *store.Store
	// DB is the node's database; nil while the node is down.
	DB *badger.DB
}

// Live reports whether the node is running.
func (n *Node) Live() bool { return n.Store != nil }

// Options change how MakeCluster builds nodes.
type Options struct {
	// Tune changes each node's raft configuration after the harness's fast test timeouts.
	Tune func(*raft.Config)
	// Logger receives the nodes' logs; nil discards them (t.Log would make passing runs noisy).
	Logger *slog.Logger
	// Registerer, when set, gives each node (by id) a metrics registerer; nil registers nothing.
	Registerer func(id string) prometheus.Registerer
	// Changes, when set, gives each node (by id) its change feed, the same one at every start,
	// so a subscription made before the node starts sees its changes across restarts.
	Changes func(id string) *store.Feed
	// DeadNodeTimeout is every node's store.Config.DeadNodeTimeout (0: no dead node cleanup).
	DeadNodeTimeout time.Duration
	// PeerInfo is every node's store.Config.PeerInfo: what the node at a (made-up) HTTPAddr
	// says its build knows. nil: every node runs this build.
	PeerInfo func(ctx context.Context, addr string) (uint16, error)
}

// Cluster is a set of nodes started by MakeCluster.
type Cluster struct {
	t       testing.TB
	nodes   []*Node
	factory func(id string) store.Processor
	opts    Options
	base    string
}

// FastTimeouts makes elections and heartbeats quicker than raft's defaults (1 s, 1 s, 500 ms
// lease), yet slow enough that a leader keeps its lease on a loaded machine: with 300 ms and a
// 150 ms lease, tests that write through one leader lost it mid-test ("leadership lost while
// committing log") when the suite ran under CPU and disk pressure with -race (make soak-load,
// docs/reliability.md). Tests wait for conditions, so only the elections they cause take longer.
func FastTimeouts(c *raft.Config) {
	c.HeartbeatTimeout = 700 * time.Millisecond
	c.ElectionTimeout = 700 * time.Millisecond
	c.LeaderLeaseTimeout = 500 * time.Millisecond
	c.CommitTimeout = 5 * time.Millisecond
}

// MakeCluster starts n nodes: n0 bootstraps, the others join through the leader as non-voters,
// catch up, and are promoted (the hub's join protocol). processor makes each node's Processor.
// The cluster is shut down when the test ends.
func MakeCluster(t testing.TB, n int, processor func(id string) store.Processor, opts ...Options) *Cluster {
	t.Helper()
	// The base dir is made before Close is registered: cleanups run last-in first-out, and the
	// databases must close before their directories go.
	c := &Cluster{t: t, factory: processor, base: t.TempDir()}
	if len(opts) > 0 {
		c.opts = opts[0]
	}
	t.Cleanup(c.Close)
	for i := range n {
		node := &Node{ID: fmt.Sprintf("n%d", i), Dir: filepath.Join(c.base, fmt.Sprintf("n%d", i)), RaftAddr: "127.0.0.1:0",
			HTTPAddr: fmt.Sprintf("127.0.0.1:%d", 18080+i)}
		c.nodes = append(c.nodes, node)
		c.start(node, i == 0)
		if i == 0 {
			c.Leader()
			continue
		}
		c.Join(node)
	}
	return c
}

// Join adds a running node to the cluster with the join protocol: non-voter, wait until it has
// applied the leader's commit index, promote.
func (c *Cluster) Join(node *Node) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), WaitTimeout)
	defer cancel()
	// Membership changes are retried when leadership moves meanwhile (a loaded machine can
	// miss a heartbeat): both steps are idempotent, as the hub's join protocol relies on.
	retry := func(what string, f func() error) {
		for {
			err := f()
			if err == nil {
				return
			}
			if !errors.Is(err, store.ErrLeadershipLost) && !errors.Is(err, store.ErrNotLeader) || ctx.Err() != nil {
				c.t.Fatalf("%s %s: %v", what, node.ID, err)
			}
			c.t.Logf("%s %s: %v; retrying", what, node.ID, err)
			time.Sleep(100 * time.Millisecond)
		}
	}
	var idx uint64
	retry("add as non-voter", func() error {
		var err error
		idx, err = c.Leader().Store.AddNonvoter(ctx, node.ID, node.RaftAddr, node.HTTPAddr)
		return err
	})
	if err := node.Store.WaitApplied(ctx, idx); err != nil {
		c.t.Fatalf("%s catching up to %d: %v", node.ID, idx, err)
	}
	retry("promote", func() error { return c.Leader().Store.Promote(ctx, node.ID, node.RaftAddr) })
}

func (c *Cluster) start(node *Node, bootstrap bool) {
	c.t.Helper()
	db, err := badger.Open(kv.Options(filepath.Join(node.Dir, "db"), kv.Server).WithNumVersionsToKeep(1))
	if err != nil {
		c.t.Fatalf("open %s db: %v", node.ID, err)
	}
	log := c.opts.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	var reg prometheus.Registerer
	if c.opts.Registerer != nil {
		reg = c.opts.Registerer(node.ID)
	}
	var feed *store.Feed
	if c.opts.Changes != nil {
		feed = c.opts.Changes(node.ID)
	}
	s, err := store.Open(store.Config{
		Registerer: reg, Changes: feed,
		DB: db, Dir: filepath.Join(node.Dir, "raft"), NodeID: node.ID,
		RaftBind: node.RaftAddr, HTTPAddr: node.HTTPAddr, Bootstrap: bootstrap,
		Processor: c.factory(node.ID), Logger: log, DeadNodeTimeout: c.opts.DeadNodeTimeout,
		PeerInfo: c.opts.PeerInfo,
		Tune: func(rc *raft.Config) {
			FastTimeouts(rc)
			if c.opts.Tune != nil {
				c.opts.Tune(rc)
			}
		},
	})
	if err != nil {
		_ = db.Close()
		c.t.Fatalf("open %s: %v", node.ID, err)
	}
	node.DB, node.Store, node.RaftAddr = db, s, s.RaftAddr()
}

// Nodes returns every node, live or not.
func (c *Cluster) Nodes() []*Node { return c.nodes }

// LiveNodes returns the running nodes.
func (c *Cluster) LiveNodes() []*Node {
	var out []*Node
	for _, n := range c.nodes {
		if n.Live() {
			out = append(out, n)
		}
	}
	return out
}

// Leader waits until exactly one live node is leader and every live member agrees, and returns it.
func (c *Cluster) Leader() *Node {
	c.t.Helper()
	var leader *Node
	testhelp.WaitFor(c.t, WaitTimeout, "a single leader", func() bool {
		leader = c.currentLeader()
		return leader != nil
	})
	return leader
}

func (c *Cluster) currentLeader() *Node {
	live := c.LiveNodes()
	stores := make([]*store.Store, len(live))
	for i, n := range live {
		stores[i] = n.Store
	}
	if i := AgreedLeader(stores); i >= 0 {
		return live[i]
	}
	return nil
}

// AgreedLeader returns the index of the store in stores that leads when exactly one does and
// every store that is a member of its configuration names it as leader; -1 otherwise (no
// leader yet, two during a change, or a member that has not heard). A store not in the leader's
// configuration (not yet joined, or removed) does not count. nodetest's clusters use it too.
func AgreedLeader(stores []*store.Store) int {
	leader := -1
	for i, s := range stores {
		if s.IsLeader() {
			if leader >= 0 {
				return -1
			}
			leader = i
		}
	}
	if leader < 0 {
		return -1
	}
	l := stores[leader]
	members := map[string]bool{}
	for _, m := range l.Status().Nodes {
		members[m.ID] = true
	}
	for _, s := range stores {
		if members[s.NodeID()] && s.Status().LeaderID != l.NodeID() {
			return -1
		}
	}
	return leader
}

// Replicated reports whether every store has applied the commit index of the agreed leader
// among them (false without one).
func Replicated(stores []*store.Store) bool {
	i := AgreedLeader(stores)
	if i < 0 {
		return false
	}
	want := stores[i].Status().CommitIndex
	for _, s := range stores {
		if s.Status().AppliedIndex < want {
			return false
		}
	}
	return true
}

// WaitForNewLeader waits for a leader other than old and returns it.
func (c *Cluster) WaitForNewLeader(old *Node) *Node {
	c.t.Helper()
	var leader *Node
	testhelp.WaitFor(c.t, WaitTimeout, "a new leader", func() bool {
		leader = c.currentLeader()
		return leader != nil && leader != old
	})
	return leader
}

// Followers returns the live nodes other than the leader.
func (c *Cluster) Followers() []*Node {
	c.t.Helper()
	l := c.Leader()
	var out []*Node
	for _, n := range c.LiveNodes() {
		if n != l {
			out = append(out, n)
		}
	}
	return out
}

// Stop closes node gracefully (a leader hands leadership over first) and closes its database.
func (c *Cluster) Stop(node *Node) {
	c.t.Helper()
	if !node.Live() {
		return
	}
	if err := node.Store.Close(); err != nil {
		c.t.Errorf("close %s: %v", node.ID, err)
	}
	if err := node.DB.Close(); err != nil {
		c.t.Errorf("close %s db: %v", node.ID, err)
	}
	node.Store, node.DB = nil, nil
}

// Kill stops node abruptly (no leadership transfer) and closes its database.
func (c *Cluster) Kill(node *Node) {
	c.t.Helper()
	if !node.Live() {
		return
	}
	if err := node.Store.Abort(); err != nil {
		c.t.Logf("abort %s: %v", node.ID, err)
	}
	if err := node.DB.Close(); err != nil {
		c.t.Errorf("close %s db: %v", node.ID, err)
	}
	node.Store, node.DB = nil, nil
}

// Restart starts a stopped node again from its directory, on its old raft address.
func (c *Cluster) Restart(node *Node) {
	c.t.Helper()
	if node.Live() {
		c.t.Fatalf("restart %s: still running", node.ID)
	}
	c.start(node, false)
}

// Close stops every live node gracefully. It runs at test cleanup.
func (c *Cluster) Close() {
	for _, n := range c.LiveNodes() {
		if err := n.Store.Close(); err != nil {
			c.t.Logf("close %s: %v", n.ID, err)
		}
		if err := n.DB.Close(); err != nil {
			c.t.Logf("close %s db: %v", n.ID, err)
		}
		n.Store, n.DB = nil, nil
	}
}

// WaitReplicated waits until every live node has applied the leader's last index.
func (c *Cluster) WaitReplicated() {
	c.t.Helper()
	testhelp.WaitFor(c.t, WaitTimeout, "all nodes to apply the leader's log", func() bool {
		live := c.LiveNodes()
		stores := make([]*store.Store, len(live))
		for i, n := range live {
			stores[i] = n.Store
		}
		return Replicated(stores)
	})
}

// EnsureSame waits for replication, then fails the test unless every live node holds the same keys
// and values under store.FSMPrefix.
func (c *Cluster) EnsureSame() {
	c.t.Helper()
	var diff string
	ok := poll(WaitTimeout, func() bool {
		c.WaitReplicated()
		live := c.LiveNodes()
		ids, dbs := make([]string, len(live)), make([]*badger.DB, len(live))
		for i, n := range live {
			ids[i], dbs[i] = n.ID, n.DB
		}
		diff = StateDiff(c.t, ids, dbs)
		return diff == ""
	})
	if !ok {
		c.t.Fatalf("FSM states differ: %s", diff)
	}
}

// StateDiff compares the keys and values under store.FSMPrefix of the databases dbs (of the nodes
// ids) with the first one's, and describes the first difference ("" when all are the same).
func StateDiff(t testing.TB, ids []string, dbs []*badger.DB) string {
	t.Helper()
	ref := Dump(t, dbs[0])
	for i, db := range dbs[1:] {
		if d := diffDumps(ref, Dump(t, db)); d != "" {
			return fmt.Sprintf("%s vs %s: %s", ids[0], ids[i+1], d)
		}
	}
	return ""
}

// KV is one key and value.
type KV struct{ Key, Value []byte }

// Dump returns every key and value under store.FSMPrefix in key order.
func Dump(t testing.TB, db *badger.DB) []KV {
	t.Helper()
	var out []KV
	err := db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = store.FSMPrefix
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			out = append(out, KV{it.Item().KeyCopy(nil), v})
		}
		return nil
	})
	if err != nil {
		t.Fatalf("dump: %v", err)
	}
	return out
}

func diffDumps(a, b []KV) string {
	for i := 0; i < len(a) && i < len(b); i++ {
		if !bytes.Equal(a[i].Key, b[i].Key) {
			return fmt.Sprintf("key %d: %q vs %q", i, a[i].Key, b[i].Key)
		}
		if !bytes.Equal(a[i].Value, b[i].Value) {
			return fmt.Sprintf("key %q: %q vs %q", a[i].Key, a[i].Value, b[i].Value)
		}
	}
	if len(a) != len(b) {
		return fmt.Sprintf("%d keys vs %d", len(a), len(b))
	}
	return ""
}

// poll calls cond every 10 ms until it returns true (true) or timeout passes (false).
func poll(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}
