package store_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/dgraph-io/badger/v4"

	"github.com/driftline/driftline/hub/command"
	"github.com/driftline/driftline/hub/store"
	"github.com/driftline/driftline/hub/store/storetest"
	"github.com/driftline/driftline/internal/testhelp"
)

// newPartsKV is splitKV whose parts travel as a command type newer than the whole command
// (TypeRolloutCreatePart, as hub/state's rollout parts do), payloads still KVOps.
type newPartsKV struct{ splitKV }

func (p newPartsKV) Split(db *badger.DB, env command.Envelope) ([]command.Envelope, int, error) {
	parts, res, err := p.splitKV.Split(db, env)
	for i := range parts {
		parts[i].Type = command.TypeRolloutCreatePart
	}
	return parts, res, err
}

// oldKV is the processor of a node of the build before parts: it counts the part commands it
// is given (that build would have stopped at the first one) and refuses them.
type oldKV struct {
	storetest.KVProcessor
	parts *atomic.Int32
}

func (p oldKV) Apply(txn *badger.Txn, index uint64, env command.Envelope) (any, error) {
	return p.ApplyChanges(txn, index, env, func(any) {})
}

func (p oldKV) ApplyChanges(txn *badger.Txn, index uint64, env command.Envelope, emit func(any)) (any, error) {
	if env.Type&^command.IgnoreIfUnknown >= command.TypeRolloutCreatePart {
		p.parts.Add(1)
		return nil, errors.New("a command type this build does not know (it would stop here)")
	}
	return p.KVProcessor.ApplyChanges(txn, index, env, emit)
}

// TestPartsWaitForEveryNode: while a node of the cluster reports a build whose MaxCommand is below
// the parts' types (a rolling upgrade), the leader proposes a command its processor would split
// as the old single command: the older node applies it, and a command too big for one
// transaction is refused with ErrCommandTooBig and ErrNotSplit. Once that node runs a build that
// knows the parts, big commands are split again, and every node applies them.
func TestPartsWaitForEveryNode(t *testing.T) {
	var upgraded atomic.Bool
	var seen atomic.Int32
	oldAddr := "127.0.0.1:18082" // storetest's made-up HTTPAddr of n2
	info := func(_ context.Context, addr string) (uint16, error) {
		if addr == oldAddr && !upgraded.Load() {
			return uint16(command.TypeChunksOrphanMark), nil // the build before parts
		}
		return uint16(command.MaxType()), nil
	}
	proc := func(id string) store.Processor {
		if id == "n2" && !upgraded.Load() {
			return oldKV{parts: &seen}
		}
		return newPartsKV{}
	}
	c := storetest.MakeCluster(t, 3, proc, storetest.Options{PeerInfo: info})
	if c.Nodes()[2].HTTPAddr != oldAddr {
		t.Fatalf("n2's API address is %s, the test assumes %s", c.Nodes()[2].HTTPAddr, oldAddr)
	}
	lead := c.Leader().Store
	if err := lead.ClusterKnows(ctxT(t), command.TypeRolloutCreatePart); !errors.Is(err, store.ErrClusterBehind) {
		t.Fatalf("ClusterKnows the parts with n2 on the old build: %v", err)
	}

	// Split-worthy but small enough for one transaction: proposed whole, applied by n2 too.
	res, err := lead.Apply(ctxT(t), storetest.Op(storetest.KVOp{Op: storetest.OpFill, Key: "small", Count: 250, Size: 16}))
	if err != nil {
		t.Fatalf("fill of 250 keys during the upgrade: %v", err)
	}
	idx := res.(storetest.KVResult).Index
	for _, n := range c.Nodes() {
		testhelp.WaitFor(t, storetest.WaitTimeout, n.ID+" applied the fill", func() bool { return n.Store.Status().AppliedIndex >= idx })
	}
	if seen.Load() != 0 {
		t.Fatalf("the older node was given %d part commands: it would have stopped", seen.Load())
	}
	c.EnsureSame()

	// Too big for one transaction and not split: refused, saying why.
	// Twice what one transaction holds, in values kept inline (badger counts a value above its
	// threshold, 1 KiB here, as a pointer).
	size := 1000
	count := int(2*lead.DB().MaxBatchSize()) / size
	big := storetest.Op(storetest.KVOp{Op: storetest.OpFill, Key: "big", Count: count, Size: size})
	if _, err := lead.Apply(ctxT(t), big); !errors.Is(err, store.ErrCommandTooBig) || !errors.Is(err, store.ErrNotSplit) {
		t.Fatalf("big fill during the upgrade: %v, want ErrCommandTooBig and ErrNotSplit", err)
	}
	if seen.Load() != 0 {
		t.Fatalf("the older node was given %d part commands", seen.Load())
	}

	// n2 runs the new build: the leader learns it (asking again in the background) and splits.
	upgraded.Store(true)
	c.Stop(c.Nodes()[2])
	c.Restart(c.Nodes()[2])
	lead = c.Leader().Store
	testhelp.WaitFor(t, storetest.WaitTimeout, "the leader learns every node knows the parts", func() bool {
		return lead.ClusterKnows(ctxT(t), command.TypeRolloutCreatePart) == nil
	})
	res, err = lead.Apply(ctxT(t), big)
	if err != nil {
		t.Fatalf("big fill after the upgrade: %v", err)
	}
	idx = res.(storetest.KVResult).Index
	for _, n := range c.Nodes() {
		testhelp.WaitFor(t, storetest.WaitTimeout, n.ID+" applied the split fill", func() bool { return n.Store.Status().AppliedIndex >= idx })
		if v, ok, _ := storetest.Get(n.Store.DB(), "big"); !ok || v != "done" {
			t.Fatalf("node %s: the split fill's last part not applied", n.ID)
		}
	}
	c.EnsureSame()
}

// TestPartsWaitForUnreachableNode: a node that cannot be asked (down, or a build without
// cluster.PathInfo) counts as not knowing the parts; one that said it knows them keeps counting
// as knowing them while it is unreachable (restarting), so a big command still splits.
func TestPartsWaitForUnreachableNode(t *testing.T) {
	var down atomic.Bool
	down.Store(true)
	info := func(_ context.Context, addr string) (uint16, error) {
		if addr == "127.0.0.1:18081" && down.Load() {
			return 0, errors.New("connection refused")
		}
		return uint16(command.MaxType()), nil
	}
	c := storetest.MakeCluster(t, 3, func(string) store.Processor { return newPartsKV{} }, storetest.Options{PeerInfo: info})
	lead := c.Leader().Store
	if err := lead.ClusterKnows(ctxT(t), command.TypeRolloutCreatePart); !errors.Is(err, store.ErrClusterBehind) {
		t.Fatalf("ClusterKnows with n1 unreachable: %v", err)
	}
	down.Store(false)
	testhelp.WaitFor(t, storetest.WaitTimeout, "n1 answers", func() bool {
		return lead.ClusterKnows(ctxT(t), command.TypeRolloutCreatePart) == nil
	})
	down.Store(true) // unreachable again: what it said stands
	if err := lead.ClusterKnows(ctxT(t), command.TypeRolloutCreatePart); err != nil {
		t.Fatalf("ClusterKnows after n1 said it knows the parts, n1 unreachable again: %v", err)
	}
}
