package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/hashicorp/raft"

	"github.com/driftline/driftline/hub/command"
)

// Node is one cluster member as Status reports it.
type Node struct {
	// ID is the raft server id.
	ID string `json:"id"`
	// Raft is the raft transport address.
	Raft string `json:"raft"`
	// HTTP is the API address from the node's record ("" if none was recorded).
	HTTP string `json:"http"`
	// State is "leader", "follower", "candidate", "nonvoter" or "unknown" (as far as this node
	// can tell: another node's state is inferred from the configuration and the known leader).
	State string `json:"state"`
	// Voter says whether the node votes.
	Voter bool `json:"voter"`
}

// Status is a snapshot of the cluster as this node sees it.
type Status struct {
	LeaderID     string `json:"leader_id"`
	LeaderHTTP   string `json:"leader_http"`
	Nodes        []Node `json:"nodes"`
	Term         uint64 `json:"term"`
	CommitIndex  uint64 `json:"commit_index"`
	AppliedIndex uint64 `json:"applied_index"`
	// State is this node's raft state: "leader", "follower", "candidate" or "shutdown".
	State string `json:"state"`
}

// Status returns the cluster membership, the leader and this node's raft indexes.
func (s *Store) Status() Status {
	st := Status{
		Term:         s.raft.CurrentTerm(),
		CommitIndex:  s.raft.CommitIndex(),
		AppliedIndex: s.appliedIndex(),
		State:        stateName(s.raft.State()),
	}
	_, lid := s.raft.LeaderWithID()
	st.LeaderID = string(lid)
	records := s.nodeRecords()
	st.LeaderHTTP = records[st.LeaderID].HTTP
	f := s.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		s.log.Warn("status: raft configuration", "err", err)
		return st
	}
	for _, srv := range f.Configuration().Servers {
		n := Node{ID: string(srv.ID), Raft: string(srv.Address), HTTP: records[string(srv.ID)].HTTP,
			Voter: srv.Suffrage == raft.Voter}
		switch {
		case n.ID == st.LeaderID:
			n.State = "leader"
		case !n.Voter:
			n.State = "nonvoter"
		case n.ID == s.cfg.NodeID:
			n.State = st.State
		case st.LeaderID != "":
			n.State = "follower"
		default:
			n.State = "unknown"
		}
		st.Nodes = append(st.Nodes, n)
	}
	return st
}

// nodeRecords reads the replicated node records (TypeNodeSet) by id.
func (s *Store) nodeRecords() map[string]command.NodeSet {
	out := map[string]command.NodeSet{}
	err := s.cfg.DB.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = nodesPrefix
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var n command.NodeSet
			if err := it.Item().Value(func(v []byte) error { return json.Unmarshal(v, &n) }); err != nil {
				return err
			}
			out[n.ID] = n
		}
		return nil
	})
	if err != nil {
		s.log.Warn("read node records", "err", err)
	}
	return out
}

// LeaderHTTP returns the leader's id and API address, from the node records. ok is false while
// there is no leader or its record is not known here yet.
func (s *Store) LeaderHTTP() (id, httpAddr string, ok bool) {
	_, lid := s.raft.LeaderWithID()
	if lid == "" {
		return "", "", false
	}
	var n command.NodeSet
	err := s.cfg.DB.View(func(txn *badger.Txn) error {
		item, err := txn.Get(nodeKey(string(lid)))
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error { return json.Unmarshal(v, &n) })
	})
	if err != nil && !errors.Is(err, badger.ErrKeyNotFound) {
		s.log.Warn("read the leader's node record", "leader", lid, "err", err)
	}
	return string(lid), n.HTTP, err == nil && n.HTTP != ""
}

// Ready reports whether a leader is known and this node's FSM has applied everything that was
// committed when Ready first saw a leader. Once true it stays true while a leader is known.
func (s *Store) Ready() bool {
	if _, lid := s.raft.LeaderWithID(); lid == "" {
		return false
	}
	if s.caughtUp.Load() {
		return true
	}
	t := s.readyTarget.Load()
	if t == 0 {
		t = s.raft.CommitIndex()
		s.readyTarget.Store(t)
	}
	if s.appliedIndex() >= t {
		s.caughtUp.Store(true)
		return true
	}
	return false
}

// WaitApplied blocks until this node's FSM has applied index, ctx ends (ErrTimeout) or the store
// closes (ErrShutdown).
func (s *Store) WaitApplied(ctx context.Context, index uint64) error {
	// The FSM wakes the wait when it applies an entry (appliedMoved). Entries raft applies
	// without the FSM (no-ops, configuration changes) move the index with no wake-up, so a slow
	// tick catches those.
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		moved := s.ap.appliedMoved() // taken before the check, so no apply slips between them
		if s.appliedIndex() >= index {
			return nil
		}
		select {
		case <-moved:
		case <-t.C:
		case <-ctx.Done():
			return fmt.Errorf("%w: waiting for index %d (applied %d): %w", ErrTimeout, index, s.appliedIndex(), ctx.Err())
		case <-s.stop:
			return ErrShutdown
		}
	}
}

// Barrier returns once every entry committed before the call is applied on this node, the
// leader. A read made after it sees every write acknowledged before Barrier was called
// (linearizable). On a follower it returns ErrNotLeader.
func (s *Store) Barrier(ctx context.Context) error {
	if !s.IsLeader() {
		return ErrNotLeader
	}
	return s.wait(ctx, "barrier", s.raft.Barrier(timeoutFrom(ctx, opTimeout)))
}

// VerifyLeader checks with a quorum that this node is still the leader.
func (s *Store) VerifyLeader(ctx context.Context) error {
	if !s.IsLeader() {
		return ErrNotLeader
	}
	return s.wait(ctx, "verify leader", s.raft.VerifyLeader())
}

// wait waits for f or ctx, translating errors.
func (s *Store) wait(ctx context.Context, what string, f raft.Future) error {
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		return translate(what, err)
	case <-ctx.Done():
		return fmt.Errorf("%w: %s: %w", ErrTimeout, what, ctx.Err())
	}
}

// AddNonvoter adds a node as a non-voter and records its addresses (TypeNodeSet). It returns the
// commit index after both: the joiner waits until it has applied that index (WaitApplied), then
// asks for Promote. Leader only.
func (s *Store) AddNonvoter(ctx context.Context, id, raftAddr, httpAddr string) (uint64, error) {
	if !s.IsLeader() {
		return 0, ErrNotLeader
	}
	f := s.raft.AddNonvoter(raft.ServerID(id), raft.ServerAddress(raftAddr), 0, timeoutFrom(ctx, opTimeout))
	if err := s.wait(ctx, "add nonvoter "+id, f); err != nil {
		return 0, err
	}
	if err := s.setNode(ctx, id, raftAddr, httpAddr); err != nil {
		return 0, err
	}
	return s.raft.CommitIndex(), nil
}

// Promote makes a member a voter. Leader only.
func (s *Store) Promote(ctx context.Context, id, raftAddr string) error {
	if !s.IsLeader() {
		return ErrNotLeader
	}
	f := s.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(raftAddr), 0, timeoutFrom(ctx, opTimeout))
	return s.wait(ctx, "promote "+id, f)
}

// Remove takes a node out of the cluster and forgets its record. Leader only. Removing the
// leader itself forgets the record first, then steps down.
func (s *Store) Remove(ctx context.Context, id string) error {
	if !s.IsLeader() {
		return ErrNotLeader
	}
	forget := func() error {
		env, err := command.New(command.TypeNodeRemove, "", 0, "", command.NodeRemove{ID: id})
		if err != nil {
			return err
		}
		_, err = s.Apply(ctx, env)
		return err
	}
	if id == s.cfg.NodeID {
		if err := forget(); err != nil {
			return err
		}
	}
	f := s.raft.RemoveServer(raft.ServerID(id), 0, timeoutFrom(ctx, opTimeout))
	if err := s.wait(ctx, "remove "+id, f); err != nil {
		return err
	}
	if id == s.cfg.NodeID {
		return nil
	}
	return forget()
}

func (s *Store) setNode(ctx context.Context, id, raftAddr, httpAddr string) error {
	env, err := command.New(command.TypeNodeSet, "", 0, "", command.NodeSet{ID: id, Raft: raftAddr, HTTP: httpAddr})
	if err != nil {
		return err
	}
	_, err = s.Apply(ctx, env)
	return err
}

// watchLeadership reads raft's leadership notifications (never letting raft block on them) and,
// on gaining leadership, records this node's addresses so followers can find its API.
func (s *Store) watchLeadership(notify <-chan bool) {
	defer s.wg.Done()
	for {
		select {
		case <-s.stop:
			return
		case leader := <-notify:
			s.caughtUp.Store(false)
			s.readyTarget.Store(0)
			if !leader {
				s.log.Info("lost leadership")
				continue
			}
			s.log.Info("became leader", "term", s.raft.CurrentTerm())
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				s.announceSelf()
			}()
		}
	}
}

// announceSelf applies a TypeNodeSet for this node, retrying while it stays leader.
func (s *Store) announceSelf() {
	for attempt := 0; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		err := s.setNode(ctx, s.cfg.NodeID, s.RaftAddr(), s.cfg.HTTPAddr)
		if err == nil {
			err = s.fixOwnAddress(ctx) // backup.go
		}
		cancel()
		if err == nil || errors.Is(err, ErrNotLeader) || errors.Is(err, ErrShutdown) {
			return
		}
		s.log.Warn("record own node address", "err", err, "attempt", attempt)
		select {
		case <-s.stop:
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Snapshot makes raft take a snapshot now and compact its log (operators' backups, tests).
func (s *Store) Snapshot() error {
	return translate("snapshot", s.raft.Snapshot().Error())
}

// StateDigest is a digest of the replicated state as this node holds it.
type StateDigest struct {
	// AppliedIndex is the Raft index the state is at.
	AppliedIndex uint64 `json:"applied_index"`
	// Digest is sha256 over every key under FSMPrefix and its value, in key order (each
	// length-prefixed), hex encoded: equal on two nodes at the same applied index unless they
	// diverged.
	Digest string `json:"digest"`
	// Keys is the number of keys hashed.
	Keys int `json:"keys"`
}

// Digest hashes the FSM state in one read transaction. It reads the whole state: for checks, not
// for hot paths.
func (s *Store) Digest() (StateDigest, error) {
	var out StateDigest
	h := sha256.New()
	err := s.cfg.DB.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = FSMPrefix
		opts.PrefetchSize = 16
		it := txn.NewIterator(opts)
		defer it.Close()
		var n [8]byte
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			k := item.Key()
			v, err := item.ValueCopy(nil)
			if err != nil {
				return err
			}
			if bytes.Equal(k, appliedKey) && len(v) >= 8 {
				out.AppliedIndex = binary.BigEndian.Uint64(v)
			}
			binary.BigEndian.PutUint64(n[:], uint64(len(k)))
			h.Write(n[:])
			h.Write(k)
			binary.BigEndian.PutUint64(n[:], uint64(len(v)))
			h.Write(n[:])
			h.Write(v)
			out.Keys++
		}
		return nil
	})
	if err != nil {
		return StateDigest{}, fmt.Errorf("store: digest: %w", err)
	}
	out.Digest = hex.EncodeToString(h.Sum(nil))
	return out, nil
}

// appliedIndex is the highest raft index whose effects are in the state. raft's AppliedIndex
// moves when raft hands entries to the FSM goroutine, before the FSM has applied them, so a node
// restarting or catching up reports entries as applied that readers cannot see yet. The FSM's own
// position covers every command it applied; the entries after it up to raft's index count as
// applied only when none of them is a command (no-ops and configuration changes, which never
// reach the FSM).
func (s *Store) appliedIndex() uint64 {
	raftIdx := s.raft.AppliedIndex()
	fsmIdx := s.ap.applied.Load()
	if fsmIdx >= raftIdx {
		return raftIdx
	}
	for i := fsmIdx + 1; i <= raftIdx; i++ {
		var l raft.Log
		if err := s.logs.GetLog(i, &l); err != nil {
			// Compacted into a snapshot: raft restores it before going on, and Restore moves the
			// FSM's position, so what is gone from the log is not pending here.
			continue
		}
		if l.Type == raft.LogCommand {
			return i - 1
		}
	}
	return raftIdx
}
