package store

import (
	"io"
	"log/slog"

	"github.com/dgraph-io/badger/v4"
	"github.com/hashicorp/raft"
)

// fsm is the raft.BatchingFSM of the hub. It only forwards: applying lives in applier, the
// snapshot format in snapshot.go. Raft calls Apply, ApplyBatch, Snapshot and Restore from one
// goroutine; Persist runs concurrently with later applies, on its own read transaction.
type fsm struct {
	db  *badger.DB
	ap  *applier
	log *slog.Logger
	// dir is where Restore spools a snapshot while checking it ("" means the temporary dir).
	dir string
}

var _ raft.BatchingFSM = (*fsm)(nil)

// ApplyBatch applies committed entries in as few badger transactions as fit.
func (f *fsm) ApplyBatch(logs []*raft.Log) []any {
	return f.ap.applyLogs(logs)
}

// Apply applies one committed entry.
func (f *fsm) Apply(l *raft.Log) any {
	return f.ap.applyLogs([]*raft.Log{l})[0]
}

// Snapshot pins a badger read transaction: the state as of the last applied entry.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	return &fsmSnapshot{txn: f.db.NewTransaction(false), log: f.log}, nil
}

// Restore replaces everything under FSMPrefix with the snapshot's keys, once the whole snapshot
// has been read and checked: a corrupt one leaves the state as it was.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	if err := restore(f.db, rc, f.dir); err != nil {
		f.log.Error("restore snapshot", "err", err)
		return err
	}
	if err := f.ap.loadApplied(); err != nil {
		return err
	}
	// What the snapshot replaced is described by no change: consumers rescan.
	if f.ap.feed != nil {
		f.ap.feed.Publish([]Change{{Index: f.ap.pos.index, Reset: true}})
	}
	return nil
}
