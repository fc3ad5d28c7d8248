package chaos

import (
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/driftline/driftline/internal/testhelp"
)

// TestChaos runs real hub processes under a seeded fault schedule and checks the history and the
// nodes. It runs with DRIFTLINE_INTEGRATION=1 (bounded: make ci) or CHAOS_DURATION (make soak);
// CHAOS_SEED replays a run, CHAOS_NODES sets the cluster size (3 or 5).
func TestChaos(t *testing.T) {
	dur := 30 * time.Second
	if d, err := time.ParseDuration(os.Getenv("CHAOS_DURATION")); err == nil {
		dur = d
	} else if os.Getenv("DRIFTLINE_INTEGRATION") != "1" {
		t.Skip("fault-injection run: set DRIFTLINE_INTEGRATION=1 (make ci) or CHAOS_DURATION (make soak)")
	}
	nodes := 3
	if n, err := strconv.Atoi(os.Getenv("CHAOS_NODES")); err == nil && n > 0 {
		nodes = n
	}
	bin, err := BuildBinary(t.TempDir())
	if err != nil {
		t.Fatalf("build driftline: %v", err)
	}
	// Real agents beside the hub nodes (CHAOS_AGENTS, default 3; 0: none).
	agents := 3
	if n, err := strconv.Atoi(os.Getenv("CHAOS_AGENTS")); err == nil && n >= 0 {
		agents = n
	}
	var fleetBin string
	if agents > 0 {
		if fleetBin, err = BuildFleet(t.TempDir()); err != nil {
			t.Fatalf("build firmware-sim: %v", err)
		}
	}
	out := os.Getenv("CHAOS_OUT")
	if out == "" {
		out = t.TempDir()
	}
	seed := EnvSeed()
	t.Logf("seed %d (replay: make soak SEED=%d DURATION=%v)", seed, seed, dur)
	res := Run(t, bin, Options{Seed: seed, Nodes: nodes, Clients: 6, Duration: dur, OutDir: out, Agents: agents, FleetBin: fleetBin})
	t.Log(res.Summary())
	for _, f := range res.Findings {
		t.Errorf("seed %d: %s", seed, f)
	}
	if t.Failed() {
		t.Logf("FAILED with seed %d: replay with make soak SEED=%d DURATION=%v", seed, seed, dur)
	}
}

// TestLinkCuts checks the per-link proxies: with only the leader's link to one follower cut,
// that follower falls behind while the other keeps up and writes through the leader succeed;
// with both directions cut the two nodes still reach the third, writes go on, and after healing
// every node converges. Without the per-link routing (--raft-dial-via) the cut follower would
// not fall behind.
func TestLinkCuts(t *testing.T) {
	if os.Getenv("DRIFTLINE_INTEGRATION") != "1" {
		t.Skip("real hub processes: set DRIFTLINE_INTEGRATION=1")
	}
	bin, err := BuildBinary(t.TempDir())
	if err != nil {
		t.Fatalf("build driftline: %v", err)
	}
	c := StartCluster(t, bin, 3)
	if err := Setup(c); err != nil {
		t.Fatal(err)
	}
	var lead *Node
	testhelp.WaitFor(t, 30*time.Second, "a leader", func() bool { lead = c.Leader(); return lead != nil })
	var f, o *Node // the follower cut off, the other
	for _, nd := range c.Nodes {
		switch {
		case nd == lead:
		case f == nil:
			f = nd
		default:
			o = nd
		}
	}
	write := func(i int) {
		t.Helper()
		testhelp.WaitFor(t, 30*time.Second, fmt.Sprintf("write %d applied", i), func() bool {
			l := c.Leader()
			if l == nil {
				return false
			}
			code, _ := c.Do(l, http.MethodPut, "/api/v1/models/"+model+"/versions/1/tags", map[string]any{"tags": map[string]string{"link": strconv.Itoa(i)}})
			return code == http.StatusOK
		})
	}
	applied := func(nd *Node) uint64 { st, _ := c.Status(nd); return st.AppliedIndex }

	c.CutLink(lead, f)
	for i := 0; i < 10; i++ {
		write(i)
	}
	l := c.Leader()
	if l == nil {
		t.Fatal("no leader with one link cut")
	}
	lst, _ := c.Status(l)
	testhelp.WaitFor(t, 20*time.Second, "the other follower keeps up", func() bool { return applied(o) >= lst.CommitIndex || o == l })
	// Ten writes went through while the link was cut: the cut follower misses them (a follower
	// that gets them lags by one entry at most, being read a moment before it applies).
	if l == lead && applied(f)+5 > lst.CommitIndex {
		t.Fatalf("%s applied %d with its leader's link to it cut (commit %d): the link was not cut", f.ID, applied(f), lst.CommitIndex)
	}
	t.Logf("one way %s->%s cut: leader %s commit %d, %s applied %d, %s applied %d", lead.ID, f.ID, l.ID, lst.CommitIndex, f.ID, applied(f), o.ID, applied(o))
	c.Heal(lead)

	c.CutLink(lead, f)
	c.CutLink(f, lead)
	for i := 10; i < 20; i++ {
		write(i)
	}
	c.Heal(lead)
	c.Heal(f)
	if msg := c.converge(); msg != "" {
		t.Fatal(msg)
	}
	if msg := c.compareDigests(); msg != "" {
		t.Fatal(msg)
	}
}

// TestSlowDisk checks the slow-disk fault: while strace delays a one-node hub's fsyncs by
// 300 ms, a write (which the hub syncs before it answers) takes at least that long; afterwards
// writes are fast again. It skips loudly without strace.
func TestSlowDisk(t *testing.T) {
	if os.Getenv("DRIFTLINE_INTEGRATION") != "1" {
		t.Skip("real hub processes: set DRIFTLINE_INTEGRATION=1")
	}
	bin, err := BuildBinary(t.TempDir())
	if err != nil {
		t.Fatalf("build driftline: %v", err)
	}
	c := StartCluster(t, bin, 1)
	if err := Setup(c); err != nil {
		t.Fatal(err)
	}
	nd := c.Nodes[0]
	median := func(n int) time.Duration {
		var ds []time.Duration
		for i := 0; i < n; i++ {
			start := time.Now()
			code, b := c.Do(nd, http.MethodPut, "/api/v1/models/"+model+"/versions/1/tags", map[string]any{"tags": map[string]string{"disk": strconv.Itoa(i)}})
			if code != http.StatusOK {
				t.Fatalf("write: %d %s", code, b)
			}
			ds = append(ds, time.Since(start))
		}
		slices.Sort(ds)
		return ds[len(ds)/2]
	}
	before := median(5)
	undo, ok := c.SlowDisk(nd, 300*time.Millisecond)
	if !ok {
		t.Skip("SKIPPED: strace is missing or cannot attach (make ci-deps installs it)")
	}
	during := median(5)
	undo()
	after := median(5)
	t.Logf("median write: %v before, %v with fsync delayed 300 ms, %v after", before, during, after)
	if during < 300*time.Millisecond {
		t.Fatalf("writes took %v with every fsync delayed 300 ms: the delay did not reach the hub's syncs", during)
	}
	if after >= during {
		t.Fatalf("writes still slow (%v) after the slow disk was undone", after)
	}
}
