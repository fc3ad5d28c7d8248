// Package raftstore keeps hashicorp/raft's log and stable store in the hub's one badger database,
// beside the FSM's keys, so a process has one database, one set of memtables and one fsync path.
//
// Keys: LogPrefix + 8-byte big-endian index for log entries, StablePrefix + key for the stable
// store. The database must be opened with SyncWrites (shared/kv's Server profile does): Raft
// assumes that whatever StoreLogs and Set returned is on disk.
package raftstore

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"
	"github.com/hashicorp/raft"
)

// Key prefixes of the two stores inside the shared database.
var (
	// LogPrefix starts the key of every Raft log entry.
	LogPrefix = []byte("raft/log/")
	// StablePrefix starts the key of every stable-store value (current term, last vote).
	StablePrefix = []byte("raft/stable/")
)

// Errors returned by Store.
var (
	// ErrKeyNotFound is returned by Get and GetUint64 for a key never set. Its text is exactly
	// "not found": hashicorp/raft compares the text, not the value.
	ErrKeyNotFound = errors.New("not found")
	// ErrCorrupt means a stored log entry or stable value could not be decoded.
	ErrCorrupt = errors.New("raftstore: corrupt value")
)

// deleteChunk bounds how many keys DeleteRange collects per read pass.
const deleteChunk = 4096

// Store is a raft.LogStore and raft.StableStore over a shared badger database. It is safe for
// concurrent use. It does not own the database: closing it is the caller's job.
type Store struct {
	db *badger.DB
}

var (
	_ raft.LogStore    = (*Store)(nil)
	_ raft.StableStore = (*Store)(nil)
)

// New returns a Store over db, which should have been opened with SyncWrites.
func New(db *badger.DB) *Store {
	return &Store{db: db}
}

func logKey(index uint64) []byte {
	k := make([]byte, len(LogPrefix)+8)
	copy(k, LogPrefix)
	binary.BigEndian.PutUint64(k[len(LogPrefix):], index)
	return k
}

func indexOf(key []byte) uint64 {
	return binary.BigEndian.Uint64(key[len(LogPrefix):])
}

func stableKey(key []byte) []byte {
	k := make([]byte, 0, len(StablePrefix)+len(key))
	return append(append(k, StablePrefix...), key...)
}

// FirstIndex returns the lowest stored index, or 0 (and no error) when the log is empty.
func (s *Store) FirstIndex() (uint64, error) {
	return s.edgeIndex(false)
}

// LastIndex returns the highest stored index, or 0 (and no error) when the log is empty.
func (s *Store) LastIndex() (uint64, error) {
	return s.edgeIndex(true)
}

func (s *Store) edgeIndex(last bool) (uint64, error) {
	var idx uint64
	err := s.db.View(func(txn *badger.Txn) error {
		opts := badger.IteratorOptions{PrefetchValues: false, Reverse: last, Prefix: LogPrefix}
		it := txn.NewIterator(opts)
		defer it.Close()
		seek := logKey(0)
		if last {
			seek = logKey(^uint64(0))
		}
		it.Seek(seek)
		if it.ValidForPrefix(LogPrefix) {
			k := it.Item().Key()
			if len(k) != len(LogPrefix)+8 {
				return fmt.Errorf("%w: log key of length %d", ErrCorrupt, len(k))
			}
			idx = indexOf(k)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("raft log edge index: %w", err)
	}
	return idx, nil
}

// GetLog reads the entry at index into log. A missing entry returns raft.ErrLogNotFound itself
// (not wrapped): raft compares it with ==.
func (s *Store) GetLog(index uint64, log *raft.Log) error {
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(logKey(index))
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error { return decodeLog(index, v, log) })
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return raft.ErrLogNotFound
	}
	if err != nil {
		return fmt.Errorf("get raft log %d: %w", index, err)
	}
	return nil
}

// StoreLog stores one entry.
func (s *Store) StoreLog(log *raft.Log) error {
	return s.StoreLogs([]*raft.Log{log})
}

// StoreLogs stores entries in one badger transaction, so they land together or not at all. Only
// when the batch is larger than one badger transaction may hold (badger.ErrTxnTooBig) is it split
// into several transactions, committed in order: a crash then leaves a prefix of the batch stored,
// which Raft treats like a crash before the call.
func (s *Store) StoreLogs(logs []*raft.Log) error {
	txn := s.db.NewTransaction(true)
	defer func() { txn.Discard() }()
	for _, l := range logs {
		k, v := logKey(l.Index), encodeLog(l)
		err := txn.Set(k, v)
		if errors.Is(err, badger.ErrTxnTooBig) {
			if err := txn.Commit(); err != nil {
				return fmt.Errorf("store raft logs (partial commit before %d): %w", l.Index, err)
			}
			txn = s.db.NewTransaction(true)
			err = txn.Set(k, v)
		}
		if err != nil {
			return fmt.Errorf("store raft log %d: %w", l.Index, err)
		}
	}
	if err := txn.Commit(); err != nil {
		return fmt.Errorf("store %d raft logs: %w", len(logs), err)
	}
	return nil
}

// DeleteRange deletes the entries from min to max inclusive. Deletes run in ascending index order,
// one committed transaction after the other, so a crash part-way leaves a contiguous log.
func (s *Store) DeleteRange(min, max uint64) error {
	if min > max {
		return nil
	}
	cur := min
	for {
		keys, err := s.collectKeys(cur, max)
		if err != nil {
			return err
		}
		if len(keys) == 0 {
			return nil
		}
		if err := s.deleteKeys(keys); err != nil {
			return fmt.Errorf("delete raft logs %d-%d: %w", min, max, err)
		}
		last := indexOf(keys[len(keys)-1])
		if last == max || last == ^uint64(0) {
			return nil
		}
		cur = last + 1
	}
}

// collectKeys returns up to deleteChunk existing log keys with index in [from, to].
func (s *Store) collectKeys(from, to uint64) ([][]byte, error) {
	var keys [][]byte
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: false, Prefix: LogPrefix})
		defer it.Close()
		for it.Seek(logKey(from)); it.ValidForPrefix(LogPrefix) && len(keys) < deleteChunk; it.Next() {
			k := it.Item().KeyCopy(nil)
			if len(k) != len(LogPrefix)+8 {
				return fmt.Errorf("%w: log key of length %d", ErrCorrupt, len(k))
			}
			if indexOf(k) > to {
				break
			}
			keys = append(keys, k)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("scan raft logs from %d: %w", from, err)
	}
	return keys, nil
}

func (s *Store) deleteKeys(keys [][]byte) error {
	txn := s.db.NewTransaction(true)
	defer func() { txn.Discard() }()
	for _, k := range keys {
		err := txn.Delete(k)
		if errors.Is(err, badger.ErrTxnTooBig) {
			if err := txn.Commit(); err != nil {
				return err
			}
			txn = s.db.NewTransaction(true)
			err = txn.Delete(k)
		}
		if err != nil {
			return err
		}
	}
	return txn.Commit()
}

// Set stores val under key.
func (s *Store) Set(key, val []byte) error {
	err := s.db.Update(func(txn *badger.Txn) error {
		return txn.Set(stableKey(key), append([]byte(nil), val...))
	})
	if err != nil {
		return fmt.Errorf("raft stable set %q: %w", key, err)
	}
	return nil
}

// Get returns the value of key, or ErrKeyNotFound (text "not found") if it was never set.
func (s *Store) Get(key []byte) ([]byte, error) {
	var val []byte
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(stableKey(key))
		if err != nil {
			return err
		}
		val, err = item.ValueCopy(nil)
		return err
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, ErrKeyNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("raft stable get %q: %w", key, err)
	}
	return val, nil
}

// SetUint64 stores val under key as 8 big-endian bytes.
func (s *Store) SetUint64(key []byte, val uint64) error {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], val)
	return s.Set(key, b[:])
}

// GetUint64 returns the value SetUint64 stored under key, or ErrKeyNotFound (text "not found").
func (s *Store) GetUint64(key []byte) (uint64, error) {
	b, err := s.Get(key)
	if err != nil {
		return 0, err
	}
	if len(b) != 8 {
		return 0, fmt.Errorf("%w: stable key %q holds %d bytes, want 8", ErrCorrupt, key, len(b))
	}
	return binary.BigEndian.Uint64(b), nil
}
