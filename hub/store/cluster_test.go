package store_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/driftline/driftline/hub/command"
	"github.com/driftline/driftline/hub/raftstore"
	"github.com/driftline/driftline/hub/store"
	"github.com/driftline/driftline/hub/store/storetest"
	"github.com/driftline/driftline/internal/testhelp"
)

func kvProcessor(string) store.Processor { return storetest.KVProcessor{} }

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), storetest.WaitTimeout)
	t.Cleanup(cancel)
	return ctx
}

func mustPut(t testing.TB, s *store.Store, k, v string) storetest.KVResult {
	t.Helper()
	res, err := s.Apply(ctxT(t), storetest.Put(k, v))
	if err != nil {
		t.Fatalf("put %s: %v", k, err)
	}
	r, ok := res.(storetest.KVResult)
	if !ok || r.Value != v {
		t.Fatalf("put %s: result %#v", k, res)
	}
	return r
}

func wantValue(t testing.TB, n *storetest.Node, k, want string) {
	t.Helper()
	got, ok, err := storetest.Get(n.DB, k)
	if err != nil || !ok || got != want {
		t.Fatalf("%s: %s = %q (present %v, err %v), want %q", n.ID, k, got, ok, err, want)
	}
}

// TestGroupCommitResults has many concurrent writers on one node: each gets its own result,
// domain errors included, while writes share raft entries.
func TestGroupCommitResults(t *testing.T) {
	c := storetest.MakeCluster(t, 1, kvProcessor)
	s := c.Leader().Store
	const writers, each = 64, 20
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				k := fmt.Sprintf("w%02d-%02d", w, i)
				res, err := s.Apply(context.Background(), storetest.Put(k, k))
				if err != nil {
					errs <- err
					continue
				}
				if r := res.(storetest.KVResult); r.Value != k {
					errs <- fmt.Errorf("%s got result of %s", k, r.Value)
				}
				// A create of the same key is a conflict: that caller alone gets the error.
				_, err = s.Apply(context.Background(), storetest.Op(storetest.KVOp{Op: storetest.OpCreate, Key: k, Value: "again"}))
				if !errors.Is(err, storetest.ErrExists) {
					errs <- fmt.Errorf("second create of %s: %v, want ErrExists", k, err)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	n := c.Leader()
	for w := range writers {
		wantValue(t, n, fmt.Sprintf("w%02d-%02d", w, each-1), fmt.Sprintf("w%02d-%02d", w, each-1))
	}
}

// TestApplyRefusesUnknownType: the leader never proposes a command of a type its build does not
// know (it would stop every node); the cluster keeps working.
func TestApplyRefusesUnknownType(t *testing.T) {
	c := storetest.MakeCluster(t, 1, kvProcessor)
	s := c.Leader().Store
	if _, err := s.Apply(ctxT(t), command.Envelope{Type: 0x0777}); !errors.Is(err, store.ErrBadCommand) {
		t.Fatalf("Apply of an unknown type = %v, want ErrBadCommand", err)
	}
	mustPut(t, s, "after", "ok")
	wantValue(t, c.Leader(), "after", "ok")
}

func TestFollowerApplyNotLeader(t *testing.T) {
	c := storetest.MakeCluster(t, 3, kvProcessor)
	for _, f := range c.Followers() {
		if _, err := f.Store.Apply(ctxT(t), storetest.Put("k", "v")); !errors.Is(err, store.ErrNotLeader) {
			t.Errorf("%s: Apply = %v, want ErrNotLeader", f.ID, err)
		}
		for name, err := range map[string]error{
			"barrier":       f.Store.Barrier(ctxT(t)),
			"verify leader": f.Store.VerifyLeader(ctxT(t)),
			"promote":       f.Store.Promote(ctxT(t), "x", "127.0.0.1:1"),
			"remove":        f.Store.Remove(ctxT(t), "x"),
		} {
			if !errors.Is(err, store.ErrNotLeader) {
				t.Errorf("%s: %s = %v, want ErrNotLeader", f.ID, name, err)
			}
		}
		if _, err := f.Store.AddNonvoter(ctxT(t), "x", "127.0.0.1:1", ""); !errors.Is(err, store.ErrNotLeader) {
			t.Errorf("%s: AddNonvoter = %v, want ErrNotLeader", f.ID, err)
		}
	}
}

func TestThreeNodeReplication(t *testing.T) {
	c := storetest.MakeCluster(t, 3, kvProcessor)
	l := c.Leader()
	for i := range 50 {
		mustPut(t, l.Store, fmt.Sprintf("k%d", i), fmt.Sprint(i))
	}
	c.EnsureSame()
	for _, n := range c.Nodes() {
		wantValue(t, n, "k49", "49")
		if !n.Store.Ready() {
			t.Errorf("%s not ready", n.ID)
		}
		id, http, ok := n.Store.LeaderHTTP()
		if !ok || id != l.ID || http != l.HTTPAddr {
			t.Errorf("%s: LeaderHTTP = %s %s %v, want %s %s", n.ID, id, http, ok, l.ID, l.HTTPAddr)
		}
	}
	st := c.Followers()[0].Store.Status()
	if st.LeaderID != l.ID || st.LeaderHTTP != l.HTTPAddr || len(st.Nodes) != 3 || st.State != "follower" {
		t.Fatalf("follower status: %+v", st)
	}
	for _, n := range st.Nodes {
		if !n.Voter || n.HTTP == "" || (n.State != "leader") != (n.ID != l.ID) {
			t.Errorf("status node %+v", n)
		}
	}
	if err := l.Store.Barrier(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if err := l.Store.VerifyLeader(ctxT(t)); err != nil {
		t.Fatal(err)
	}
}

// TestRestartKeepsState restarts a one-node cluster from disk, before and after a snapshot.
func TestRestartKeepsState(t *testing.T) {
	c := storetest.MakeCluster(t, 1, kvProcessor)
	n := c.Leader()
	for i := range 20 {
		mustPut(t, n.Store, fmt.Sprintf("k%d", i), "a")
	}
	c.Kill(n)
	c.Restart(n)
	wantValue(t, c.Leader(), "k19", "a")
	mustPut(t, n.Store, "k19", "b")
	if err := n.Store.Snapshot(); err != nil {
		t.Fatal(err)
	}
	mustPut(t, n.Store, "after-snapshot", "c")
	c.Kill(n)
	c.Restart(n)
	l := c.Leader()
	wantValue(t, l, "k19", "b")
	wantValue(t, l, "after-snapshot", "c")
	testhelp.WaitFor(t, storetest.WaitTimeout, "ready after restart", l.Store.Ready)
}

// TestLaggingFollowerGetsSnapshot makes the leader compact its log past what a stopped follower
// has, so the follower must be brought back with InstallSnapshot (GetLog's ErrLogNotFound path).
func TestLaggingFollowerGetsSnapshot(t *testing.T) {
	c := storetest.MakeCluster(t, 3, kvProcessor, storetest.Options{Tune: func(rc *raft.Config) {
		rc.TrailingLogs = 5
		rc.SnapshotThreshold = 1 << 20
	}})
	f := c.Followers()[0]
	had := f.Store.Status().AppliedIndex
	c.Kill(f)
	l := c.Leader()
	for i := range 100 {
		mustPut(t, l.Store, fmt.Sprintf("k%d", i), "v")
	}
	if err := l.Store.Snapshot(); err != nil {
		t.Fatal(err)
	}
	first, err := raftstore.New(l.DB).FirstIndex()
	if err != nil || first <= had+1 {
		t.Fatalf("leader log starts at %d (%v); the follower needs %d, so no snapshot would be sent", first, err, had+1)
	}
	c.Restart(f)
	c.EnsureSame()
	wantValue(t, f, "k99", "v")
}

func TestRemoveAndAddBack(t *testing.T) {
	c := storetest.MakeCluster(t, 3, kvProcessor)
	l := c.Leader()
	gone := c.Followers()[1]
	if err := l.Store.Remove(ctxT(t), gone.ID); err != nil {
		t.Fatal(err)
	}
	c.Kill(gone)
	st := l.Store.Status()
	if len(st.Nodes) != 2 {
		t.Fatalf("after remove: %+v", st.Nodes)
	}
	mustPut(t, l.Store, "while-away", "1")
	c.Restart(gone)
	c.Join(gone)
	mustPut(t, c.Leader().Store, "back", "1")
	c.EnsureSame()
	wantValue(t, gone, "while-away", "1")
	if st := c.Leader().Store.Status(); len(st.Nodes) != 3 {
		t.Fatalf("after add back: %+v", st.Nodes)
	}
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := storetest.MakeCluster(t, 1, kvProcessor, storetest.Options{
		Registerer: func(string) prometheus.Registerer { return reg },
	})
	l := c.Leader()
	for i := range 5 {
		mustPut(t, l.Store, fmt.Sprint(i), "v")
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]*dto.MetricFamily{}
	for _, f := range families {
		got[f.GetName()] = f
	}
	for _, name := range []string{"driftline_hub_raft_state", "driftline_hub_raft_term",
		"driftline_hub_raft_commit_index", "driftline_hub_raft_applied_index",
		"driftline_hub_raft_apply_seconds", "driftline_hub_raft_batch_commands"} {
		if got[name] == nil {
			t.Errorf("metric %s missing", name)
		}
	}
	if n := got["driftline_hub_raft_apply_seconds"].GetMetric()[0].GetHistogram().GetSampleCount(); n < 5 {
		t.Errorf("apply_seconds counted %d applies, want at least 5", n)
	}
	for _, m := range got["driftline_hub_raft_state"].GetMetric() {
		leader := m.GetLabel()[0].GetValue() == "leader"
		if (m.GetGauge().GetValue() == 1) != leader {
			t.Errorf("state gauge %s = %v", m.GetLabel()[0].GetValue(), m.GetGauge().GetValue())
		}
	}
}

func TestOpenRefusesBadConfig(t *testing.T) {
	s, err := store.Open(store.Config{NodeID: "n"})
	if !errors.Is(err, store.ErrConfig) || s != nil {
		t.Fatalf("Open(incomplete config) = %v, %v; want ErrConfig", s, err)
	}
}

// TestCloseHandsOverLeadership closes the leader gracefully: another node leads at once, and the
// closed store refuses work with ErrShutdown.
func TestCloseHandsOverLeadership(t *testing.T) {
	c := storetest.MakeCluster(t, 3, kvProcessor, storetest.Options{Tune: func(rc *raft.Config) {
		// An election would take at least 3 s; a leadership transfer takes milliseconds.
		rc.HeartbeatTimeout = 3 * time.Second
		rc.ElectionTimeout = 3 * time.Second
		rc.LeaderLeaseTimeout = 500 * time.Millisecond
	}})
	old := c.Leader()
	mustPut(t, old.Store, "before", "1")
	s := old.Store
	c.Stop(old)
	if _, err := s.Apply(ctxT(t), storetest.Put("k", "v")); !errors.Is(err, store.ErrShutdown) {
		t.Fatalf("Apply on a closed store = %v, want ErrShutdown", err)
	}
	start := time.Now()
	l := c.WaitForNewLeader(old)
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("new leader after %v: leadership was not handed over", d)
	}
	mustPut(t, l.Store, "after", "1")
	wantValue(t, l, "before", "1")
}

func TestWaitAppliedTimeout(t *testing.T) {
	c := storetest.MakeCluster(t, 1, kvProcessor)
	s := c.Leader().Store
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := s.WaitApplied(ctx, 1<<40); !errors.Is(err, store.ErrTimeout) {
		t.Fatalf("WaitApplied(far future) = %v, want ErrTimeout", err)
	}
	r := mustPut(t, s, "k", "v")
	if err := s.WaitApplied(ctxT(t), r.Index); err != nil {
		t.Fatalf("WaitApplied(%d) = %v", r.Index, err)
	}
}
