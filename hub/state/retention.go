package state

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"

	"github.com/driftline/driftline/hub/command"
)

// kAuditCheckpoint holds the audit checkpoint (AuditCheckpoint): where the kept audit log starts
// once older entries were exported and pruned.
const kAuditCheckpoint = "fsm/auditcp"

// Bounds of one RetentionPrune command: it deletes at most Limit keys' worth of runs edges and
// audit entries, so one Raft entry stays one small badger transaction; the leader proposes it
// again while the result says More.
const (
	DefaultPruneLimit = 1000
	MaxPruneLimit     = 10000
)

// AuditCheckpoint says where the kept audit log starts: entries 1 to Seq were exported (see
// AuditExportWriter) and pruned, and Hash is entry Seq's hash, the PrevHash of entry Seq+1. A
// verifier starts from it (or from the exports, which end with the same seq and hash). The zero
// value means nothing was pruned: the log starts at seq 1 with prev hash "".
type AuditCheckpoint struct {
	Seq  uint64 `json:"seq"`
	Hash string `json:"hash"`
	// Time is the time of entry Seq; PrunedAt the time of the command that moved the checkpoint.
	Time     int64 `json:"ts,omitempty"`
	PrunedAt int64 `json:"pruned_at,omitempty"`
}

// RetentionPrune deletes what retention no longer keeps. Payload of command.TypeRetentionPrune.
// The leader computes every bound from its clock and puts it in the command, so every node
// deletes exactly the same keys.
type RetentionPrune struct {
	// RunsBefore deletes closed lineage runs edges (device -> model version, with the drift and
	// validation totals accumulated on them) whose Until is before it, Unix ms; 0 keeps them.
	// Open edges (what a device runs now) are never deleted.
	RunsBefore int64 `json:"runs_before,omitempty"`
	// AuditThrough deletes audit entries up to this seq, which must be the last entry of an
	// export; AuditHash must be that entry's hash (the export's last hash), so nothing is pruned
	// that the export does not hold. 0 keeps the audit log.
	AuditThrough uint64 `json:"audit_through,omitempty"`
	AuditHash    string `json:"audit_hash,omitempty"`
	// Limit bounds the keys deleted by this command; 0 means DefaultPruneLimit.
	Limit int `json:"limit,omitempty"`
}

// RetentionResult is what a RetentionPrune deleted.
type RetentionResult struct {
	RunsEdges    int             `json:"runs_edges"`
	AuditEntries int             `json:"audit_entries"`
	Checkpoint   AuditCheckpoint `json:"checkpoint"`
	// More says Limit stopped the command before everything asked for was deleted.
	More bool `json:"more"`
}

func retentionPrune(txn *badger.Txn, env command.Envelope, c RetentionPrune) (any, *auditNote, error) {
	limit := c.Limit
	if limit == 0 {
		limit = DefaultPruneLimit
	}
	if limit < 0 || limit > MaxPruneLimit {
		return nil, nil, invalid("retention limit %d: want 1 to %d", c.Limit, MaxPruneLimit)
	}
	if c.RunsBefore < 0 {
		return nil, nil, invalid("runs_before %d is negative", c.RunsBefore)
	}
	var cp AuditCheckpoint
	if err := getJSON(txn, []byte(kAuditCheckpoint), &cp); err != nil && !errors.Is(err, ErrNotFound) {
		return nil, nil, err
	}
	// Checks first: a command that fails writes nothing.
	if c.AuditThrough > 0 {
		if c.AuditHash == "" {
			return nil, nil, invalid("audit_through needs audit_hash, the last hash of the export")
		}
		switch {
		case c.AuditThrough == cp.Seq && c.AuditHash != cp.Hash:
			return nil, nil, conflict("audit entry %d was pruned with hash %s, not %s", cp.Seq, cp.Hash, c.AuditHash)
		case c.AuditThrough > cp.Seq:
			var e AuditEntry
			if err := getJSON(txn, auditKey(c.AuditThrough), &e); err != nil {
				if errors.Is(err, ErrNotFound) {
					return nil, nil, notFound("audit entry %d", c.AuditThrough)
				}
				return nil, nil, err
			}
			if e.Hash != c.AuditHash {
				return nil, nil, conflict("audit entry %d has hash %s, not %s: the export does not end where the log does", e.Seq, e.Hash, c.AuditHash)
			}
		}
	}
	res := RetentionResult{Checkpoint: cp}
	if c.RunsBefore > 0 {
		keys, more, err := closedRunsEdges(txn, c.RunsBefore, limit)
		if err != nil {
			return nil, nil, err
		}
		for _, k := range keys {
			if err := txn.Delete(k); err != nil {
				return nil, nil, err
			}
		}
		res.RunsEdges = len(keys) / 2
		res.More = more
		limit -= len(keys) / 2
	}
	for seq := cp.Seq + 1; seq <= c.AuditThrough; seq++ {
		if limit <= 0 {
			res.More = true
			break
		}
		var e AuditEntry
		if err := getJSON(txn, auditKey(seq), &e); err != nil {
			return nil, nil, fmt.Errorf("audit entry %d: %w", seq, err)
		}
		if err := txn.Delete(auditKey(seq)); err != nil {
			return nil, nil, err
		}
		res.Checkpoint = AuditCheckpoint{Seq: e.Seq, Hash: e.Hash, Time: e.Time, PrunedAt: env.Time}
		res.AuditEntries++
		limit--
	}
	if res.AuditEntries > 0 {
		if err := putJSON(txn, []byte(kAuditCheckpoint), res.Checkpoint); err != nil {
			return nil, nil, err
		}
	}
	if res.RunsEdges == 0 && res.AuditEntries == 0 {
		return res, nil, nil
	}
	return res, &auditNote{"retention.prune", "retention", fmt.Sprintf("runs_edges=%d audit_through=%d audit_hash=%s",
		res.RunsEdges, res.Checkpoint.Seq, res.Checkpoint.Hash)}, nil
}

// closedRunsEdges returns the keys (edge and reverse index, in pairs) of at most limit closed
// runs edges whose Until is before before, in key order, and whether more are left.
func closedRunsEdges(txn *badger.Txn, before int64, limit int) ([][]byte, bool, error) {
	prefix := []byte(pLineageOut + KindDevice + ":")
	marker := []byte("\x00" + EdgeRuns + "\x00")
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
	defer it.Close()
	var keys [][]byte
	for it.Rewind(); it.Valid(); it.Next() {
		k := it.Item().Key()
		if !bytes.Contains(k, marker) {
			continue
		}
		var e LineageEdge
		if err := it.Item().Value(func(b []byte) error { return jsonUnmarshal(b, &e) }); err != nil {
			return nil, false, fmt.Errorf("decode %q: %w", k, err)
		}
		if e.Kind != EdgeRuns || e.Until == 0 || e.Until >= before {
			continue
		}
		if len(keys)/2 == limit {
			return keys, true, nil
		}
		keys = append(keys, it.Item().KeyCopy(nil), edgeKey(pLineageIn, e.To, e.Kind, e.From))
	}
	return keys, false, nil
}

// AuditCheckpoint returns where the kept audit log starts (the zero value when nothing was
// pruned).
func (r Reader) AuditCheckpoint() (AuditCheckpoint, error) {
	var cp AuditCheckpoint
	err := r.DB.View(func(txn *badger.Txn) error { return getJSON(txn, []byte(kAuditCheckpoint), &cp) })
	if errors.Is(err, ErrNotFound) {
		err = nil
	}
	return cp, err
}

// AuditRange calls fn for the kept audit entries with from <= seq <= through, in order, until fn
// returns an error (through 0: to the head).
func (r Reader) AuditRange(from, through uint64, fn func(AuditEntry) error) error {
	return r.DB.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(pAudit), PrefetchValues: true, PrefetchSize: 64})
		defer it.Close()
		for it.Seek(auditKey(from)); it.Valid(); it.Next() {
			var e AuditEntry
			if err := it.Item().Value(func(b []byte) error { return jsonUnmarshal(b, &e) }); err != nil {
				return err
			}
			if through > 0 && e.Seq > through {
				return nil
			}
			if err := fn(e); err != nil {
				return err
			}
		}
		return nil
	})
}

// AuditOlderThan returns the last seq of the run of kept audit entries, from the oldest, whose
// time is before before (0 when the oldest kept entry is not), and that entry's hash.
func (r Reader) AuditOlderThan(before int64) (uint64, string, error) {
	var seq uint64
	var hash string
	errStop := errors.New("stop")
	err := r.AuditRange(0, 0, func(e AuditEntry) error {
		if e.Time >= before {
			return errStop
		}
		seq, hash = e.Seq, e.Hash
		return nil
	})
	if errors.Is(err, errStop) {
		err = nil
	}
	return seq, hash, err
}

// ClosedRunsEdges counts the closed runs edges whose Until is before before, up to limit.
func (r Reader) ClosedRunsEdges(before int64, limit int) (int, error) {
	var n int
	err := r.DB.View(func(txn *badger.Txn) error {
		keys, _, err := closedRunsEdges(txn, before, limit)
		n = len(keys) / 2
		return err
	})
	return n, err
}
