package store

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"

	"github.com/dgraph-io/badger/v4"
	"github.com/hashicorp/raft"

	"github.com/driftline/driftline/hub/command"
)

// Keys the store itself keeps under FSMPrefix.
var (
	appliedKey  = []byte("fsm/meta/applied")
	nodesPrefix = []byte("fsm/nodes/")
)

// entryDone as a position means every envelope of the entry is applied.
const entryDone = math.MaxUint32

// position is how far the FSM has applied: every entry before index, and the first next
// envelopes of entry index (entryDone: all of them).
type position struct {
	index uint64
	next  uint32
}

func (p position) encode() []byte {
	b := make([]byte, 12)
	binary.BigEndian.PutUint64(b, p.index)
	binary.BigEndian.PutUint32(b[8:], p.next)
	return b
}

// covers reports whether the envelope at pos of entry index is already applied.
func (p position) covers(index uint64, pos uint32) bool {
	return index < p.index || (index == p.index && (p.next == entryDone || pos < p.next))
}

// result is the outcome of one envelope, as the FSM hands it back through raft's future.
type result struct {
	val any
	err error
}

// unit is one envelope to apply.
type unit struct {
	log   int    // position of its entry in the batch given to applyLogs
	index uint64 // raft index
	pos   uint32 // position inside a TypeBatch entry, 0 for a lone envelope
	after position
	env   command.Envelope
	res   *result
}

// applier turns committed entries into badger writes. It is used from raft's FSM goroutine only,
// except applied, which readers may load.
type applier struct {
	db      *badger.DB
	proc    Processor
	log     *slog.Logger
	pos     position      // last committed position (FSM goroutine only)
	applied atomic.Uint64 // highest raft index whose envelopes are all applied
	// moved is closed (and replaced) each time applied moves, so waiters wake on it instead of
	// polling the index (advanced).
	movedMu sync.Mutex
	moved   chan struct{}
	batches func(n int) // observes envelopes per raft entry; may be nil
	// onHalt is called when the FSM must stop (see halt); nil panics, which stops the node.
	// Tests set it to observe the halt without losing the process.
	onHalt func(err error)
	halted error // once set, nothing more is applied
	// feed receives the changes of every committed transaction; nil drops them.
	feed *Feed
}

// haltError is a committed command this node cannot apply without diverging from its peers: a
// type it does not know and that is not marked command.IgnoreIfUnknown (written by a newer
// build), or one its processor does not handle.
type haltError struct {
	index uint64
	pos   uint32
	err   error
}

func (e *haltError) Error() string {
	return fmt.Sprintf("store: committed command at raft index %d (position %d) cannot be applied by this build: %v; "+
		"the node stops instead of diverging from its peers: run the build that wrote it (finish the upgrade)", e.index, e.pos, e.err)
}

func (e *haltError) Unwrap() error { return e.err }

// halt stops applying for good: every later batch is refused the same way. By default it panics,
// which stops the node (as Nomad's FSM does); an operator sees the message in the log, and the
// node replays and stops at the same entry on every start until it runs a build that knows it.
func (a *applier) halt(err error) {
	if a.halted == nil {
		a.halted = err
		a.log.Error("FSM halted", "err", err)
	}
	if a.onHalt != nil {
		a.onHalt(a.halted)
		return
	}
	panic(a.halted.Error())
}

// loadApplied reads the applied position from the database (at start and after Restore).
func (a *applier) loadApplied() error {
	var p position
	err := a.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(appliedKey)
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error {
			if len(v) != 12 {
				return fmt.Errorf("%w: applied position of %d bytes", ErrCorruptSnapshot, len(v))
			}
			p = position{index: binary.BigEndian.Uint64(v), next: binary.BigEndian.Uint32(v[8:])}
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("load applied position: %w", err)
	}
	a.pos = p
	a.advance(p.index)
	return nil
}

// applyLogs applies a batch of committed entries and returns one response per entry: a result for
// a lone envelope, a []result for a TypeBatch entry, nil for entries that carry no command or were
// applied before a restart.
//
// A command this build cannot apply (haltError) stops it: what comes before it is applied, the
// rest of the batch and everything later is not, and halt is called.
func (a *applier) applyLogs(logs []*raft.Log) []any {
	out := make([]any, len(logs))
	if a.halted != nil {
		for i := range out {
			out[i] = &result{err: a.halted}
		}
		a.halt(a.halted)
		return out
	}
	var units []unit
	var stop *haltError
	for i, l := range logs {
		if l.Type != raft.LogCommand {
			continue
		}
		units, stop = a.expand(i, l, out, units)
		if stop != nil {
			out[i] = &result{err: stop}
			break
		}
	}
	if len(units) > 0 && stop == nil {
		units[len(units)-1].after.next = entryDone
	}
	if len(units) > 0 {
		if h := a.run(units); h != nil && stop == nil {
			stop = h
		}
	}
	if stop != nil {
		a.halt(stop)
		return out
	}
	if n := len(logs); n > 0 && a.applied.Load() < logs[n-1].Index {
		a.advance(logs[n-1].Index)
	}
	return out
}

// expand decodes entry l and appends its envelopes that still need applying to units. It stops
// with a haltError at an envelope of a type this build does not know; bytes that do not decode
// (a buggy proposer) are an error result for that envelope only.
func (a *applier) expand(i int, l *raft.Log, out []any, units []unit) ([]unit, *haltError) {
	env, err := command.Decode(l.Data)
	if errors.Is(err, command.ErrSkippable) {
		a.log.Warn("skipping command of unknown type marked ignore-if-unknown", "index", l.Index, "type", uint16(env.Type))
		return units, nil
	}
	if errors.Is(err, command.ErrUnknownType) {
		if a.pos.covers(l.Index, 0) {
			return units, nil
		}
		return units, &haltError{index: l.Index, err: err}
	}
	if err != nil {
		a.log.Error("undecodable committed command", "index", l.Index, "err", err)
		out[i] = &result{err: fmt.Errorf("%w at index %d: %w", ErrBadCommand, l.Index, err)}
		return units, nil
	}
	if env.Type != command.TypeBatch {
		if a.pos.covers(l.Index, 0) {
			return units, nil
		}
		r := &result{}
		out[i] = r
		if a.batches != nil {
			a.batches(1)
		}
		return append(units, unit{log: i, index: l.Index, after: position{l.Index, entryDone}, env: env, res: r}), nil
	}
	var b command.Batch
	if err := env.DecodePayload(&b); err != nil {
		a.log.Error("undecodable batch", "index", l.Index, "err", err)
		out[i] = &result{err: fmt.Errorf("%w at index %d: %w", ErrBadCommand, l.Index, err)}
		return units, nil
	}
	rs := make([]result, len(b.Entries))
	out[i] = rs
	if a.batches != nil {
		a.batches(len(b.Entries))
	}
	for j, raw := range b.Entries {
		pos := uint32(j)
		if a.pos.covers(l.Index, pos) {
			continue
		}
		after := position{l.Index, pos + 1}
		if j == len(b.Entries)-1 {
			after.next = entryDone
		}
		inner, err := command.Decode(raw)
		switch {
		case errors.Is(err, command.ErrSkippable):
			a.log.Warn("skipping batched command of unknown type marked ignore-if-unknown", "index", l.Index, "pos", j)
			continue
		case errors.Is(err, command.ErrUnknownType):
			return units, &haltError{index: l.Index, pos: pos, err: err}
		case err == nil && inner.Type == command.TypeBatch:
			err = errors.New("nested batch")
		}
		if err != nil {
			a.log.Error("undecodable batched command", "index", l.Index, "pos", j, "err", err)
			rs[j].err = fmt.Errorf("%w at index %d position %d: %w", ErrBadCommand, l.Index, j, err)
			continue
		}
		units = append(units, unit{log: i, index: l.Index, pos: pos, after: after, env: inner, res: &rs[j]})
	}
	return units, nil
}

// run applies units in as few transactions as badger allows. Each transaction also writes the
// applied position of its last unit, so a restart never applies a unit twice. When badger refuses
// a transaction as too big the prefix that fitted is applied again in a fresh transaction and
// committed (the processor is deterministic, so it produces the same writes and results), and the
// rest continues in the next one. A unit too big on its own gets ErrCommandTooBig. A unit the
// processor cannot apply for its type (haltError) ends the run: the units before it are
// committed, and the haltError is returned.
func (a *applier) run(units []unit) *haltError {
	for len(units) > 0 {
		n := len(units)
		for {
			fit, err := a.attempt(units[:n])
			if err == nil {
				units = units[n:]
				break
			}
			var h *haltError
			if errors.As(err, &h) {
				if fit > 0 {
					if _, err := a.attempt(units[:fit]); err != nil {
						panic(fmt.Sprintf("store: apply at index %d: %v", units[0].index, err))
					}
				}
				return h
			}
			if !errors.Is(err, badger.ErrTxnTooBig) {
				// The database failed under us (closed, disk error). The FSM cannot go on without
				// diverging from its peers: stop the node, as hashicorp/raft's own FSM errors do.
				a.log.Error("apply: database write failed", "index", units[0].index, "err", err)
				panic(fmt.Sprintf("store: apply at index %d: %v", units[0].index, err))
			}
			if fit > 0 {
				n = fit
				continue
			}
			u := units[0]
			*u.res = result{err: fmt.Errorf("%w (index %d position %d)", ErrCommandTooBig, u.index, u.pos)}
			a.log.Error("command too big for one transaction", "index", u.index, "pos", u.pos, "type", uint16(u.env.Type))
			if _, err := a.attempt(nil, u.after); err != nil {
				panic(fmt.Sprintf("store: record applied position %d: %v", u.index, err))
			}
			units = units[1:]
			break
		}
	}
	return nil
}

// attempt applies units in one transaction with the applied position after the last, and commits.
// On badger.ErrTxnTooBig it discards everything and returns how many units fitted before it.
// With no units it writes only the position given in only.
func (a *applier) attempt(units []unit, only ...position) (int, error) {
	txn := a.db.NewTransaction(true)
	defer txn.Discard()
	var changes, mine []Change
	for i := range units {
		u := &units[i]
		mine = mine[:0]
		val, err := a.one(txn, u, func(ev any) { mine = append(mine, Change{Index: u.index, Event: ev}) })
		if errors.Is(err, badger.ErrTxnTooBig) {
			return i, err
		}
		if errors.Is(err, command.ErrUnknownType) {
			return i, &haltError{index: u.index, pos: u.pos, err: err}
		}
		*u.res = result{val: val, err: err}
		if err == nil {
			changes = append(changes, mine...)
		}
	}
	var p position
	if len(units) > 0 {
		p = units[len(units)-1].after
	} else {
		p = only[0]
	}
	if err := txn.Set(appliedKey, p.encode()); err != nil {
		return len(units) - 1, err
	}
	if err := txn.Commit(); err != nil {
		return 0, err
	}
	a.pos = p
	if p.next == entryDone {
		a.advance(p.index)
	}
	if a.feed != nil {
		a.feed.Publish(changes)
	}
	return len(units), nil
}

// one applies a single envelope: node records here, everything else in the processor.
// Changes the processor emits go to emit (a ChangeProcessor's only).
func (a *applier) one(txn *badger.Txn, u *unit, emit func(any)) (any, error) {
	switch u.env.Type {
	case command.TypeNodeSet:
		var n command.NodeSet
		if err := u.env.DecodePayload(&n); err != nil {
			return nil, err
		}
		if n.ID == "" {
			return nil, fmt.Errorf("%w: node set without id", ErrBadCommand)
		}
		b, err := json.Marshal(n)
		if err != nil {
			return nil, err
		}
		return nil, txn.Set(nodeKey(n.ID), b)
	case command.TypeNodeRemove:
		var n command.NodeRemove
		if err := u.env.DecodePayload(&n); err != nil {
			return nil, err
		}
		return nil, txn.Delete(nodeKey(n.ID))
	}
	if cp, ok := a.proc.(ChangeProcessor); ok {
		return cp.ApplyChanges(txn, u.index, u.env, emit)
	}
	return a.proc.Apply(txn, u.index, u.env)
}

func nodeKey(id string) []byte {
	return append(append([]byte(nil), nodesPrefix...), id...)
}

// advance records that every entry up to index is applied and wakes the waiters of appliedMoved.
func (a *applier) advance(index uint64) {
	a.applied.Store(index)
	a.movedMu.Lock()
	if a.moved != nil {
		close(a.moved)
		a.moved = nil
	}
	a.movedMu.Unlock()
}

// appliedMoved returns a channel closed the next time the applied index moves.
func (a *applier) appliedMoved() <-chan struct{} {
	a.movedMu.Lock()
	defer a.movedMu.Unlock()
	if a.moved == nil {
		a.moved = make(chan struct{})
	}
	return a.moved
}
