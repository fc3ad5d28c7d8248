package store_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/dgraph-io/badger/v4"

	"github.com/driftline/driftline/hub/command"
	"github.com/driftline/driftline/hub/store"
	"github.com/driftline/driftline/hub/store/storetest"
	"github.com/driftline/driftline/internal/testhelp"
)

// splitKV is the key/value processor whose fills of more than 100 keys are cut into parts of
// 100 (store.Splitter); each part fills KEY/PART/..., and a last part creates KEY, whose result
// is the command's.
type splitKV struct{ storetest.KVProcessor }

func (splitKV) Split(_ *badger.DB, env command.Envelope) ([]command.Envelope, int, error) {
	var op storetest.KVOp
	if env.DecodePayload(&op) != nil || op.Op != storetest.OpFill || op.Count <= 100 {
		return nil, 0, nil
	}
	var parts []command.Envelope
	for p := 0; p*100 < op.Count; p++ {
		part := storetest.Op(storetest.KVOp{Op: storetest.OpFill, Key: fmt.Sprintf("%s/%03d", op.Key, p), Count: min(100, op.Count-p*100), Size: op.Size})
		part.Actor = env.Actor
		parts = append(parts, part)
	}
	// A trailing create of op.Key: a second proposal of the same fill fails there.
	parts = append(parts, storetest.Op(storetest.KVOp{Op: storetest.OpCreate, Key: op.Key, Value: "done"}))
	return parts, len(parts) - 1, nil
}

// TestApplySplitCommand: a command whose writes are several badger transactions' worth, split by
// the processor, is applied whole as one Raft entry on every node; its result is the named
// part's; an error in any part is the command's.
func TestApplySplitCommand(t *testing.T) {
	c := storetest.MakeCluster(t, 3, func(string) store.Processor { return splitKV{} })
	lead := c.Leader().Store
	size := 4096
	count := int(3*lead.DB().MaxBatchSize()) / size // three transactions' worth
	fill := storetest.Op(storetest.KVOp{Op: storetest.OpFill, Key: "big", Count: count, Size: size})
	res, err := lead.Apply(ctxT(t), fill)
	if err != nil {
		t.Fatalf("split fill of %d keys: %v", count, err)
	}
	r := res.(storetest.KVResult)
	if r.Value != "done" {
		t.Fatalf("result %+v, want the last part's", r)
	}
	for _, n := range c.Nodes() {
		testhelp.WaitFor(t, storetest.WaitTimeout, "node applied the entry", func() bool { return n.Store.Status().AppliedIndex >= r.Index })
		keys := 0
		err := n.Store.DB().View(func(txn *badger.Txn) error {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(storetest.KVPrefix + "big/")})
			defer it.Close()
			for it.Rewind(); it.Valid(); it.Next() {
				keys++
			}
			return nil
		})
		if err != nil || keys != count {
			t.Fatalf("node %s holds %d of the %d keys (%v)", n.ID, keys, count, err)
		}
		if v, ok, _ := storetest.Get(n.Store.DB(), "big"); !ok || v != "done" {
			t.Fatalf("node %s: the last part not applied", n.ID)
		}
	}
	if _, err := lead.Apply(ctxT(t), fill); !errors.Is(err, storetest.ErrExists) {
		t.Fatalf("second fill: %v, want its last part's ErrExists", err)
	}
}
