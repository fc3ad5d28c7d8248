// Package quarantine is the agent's bounded store of invalid rows: every row the validator
// refuses lands here with its field, rule, value, source and time, so that nothing is dropped
// silently. The store lives in a namespace of the agent's badger database; when it is full the
// oldest entries are evicted first and counted, and entries older than the age bound expire
// and are counted apart (both counts survive restarts).
package quarantine

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/driftline/driftline/agent/devicedb"
)

// Sentinel errors of the package.
var (
	// ErrCorrupt wraps a stored entry that cannot be decoded.
	ErrCorrupt = errors.New("quarantine: corrupt entry")
	// ErrBadOptions wraps bounds that cannot work (negative sizes).
	ErrBadOptions = errors.New("quarantine: bad options")
	// ErrStop may be returned by an Iterate callback to stop early without an error.
	ErrStop = devicedb.ErrStop
)

// Namespace is the name of the child of the agent's extension namespace that holds the
// quarantine (agent.ExtensionState(ns).Sub(Namespace)): the agent and `driftline-agent
// quarantine` both use it.
const Namespace = "quarantine"

// Defaults of Options.
const (
	// DefaultMaxRows is the number of entries kept when Options.MaxRows is 0.
	DefaultMaxRows = 10000
	// DefaultMaxBytes is the stored size kept when Options.MaxBytes is 0.
	DefaultMaxBytes = 16 << 20
)

// maxTxnBytes bounds the values written in one transaction, well under 15% of the Edge
// profile's 4 MiB memtable (badger's ErrTxnTooBig limit).
const maxTxnBytes = 256 << 10

// Options bound a Store. Zero values take the defaults.
type Options struct {
	// MaxRows is the most entries kept (default DefaultMaxRows).
	MaxRows int
	// MaxBytes is the most stored bytes kept (default DefaultMaxBytes).
	MaxBytes int64
	// MaxAge, when positive, expires entries older than this (by Entry.Time), oldest first, on
	// every Add and Expire. Zero keeps entries until space runs out.
	MaxAge time.Duration
	// OnEvict, when set, is called with the number of entries each Add evicted (for a metric).
	// It runs with the store's lock held and must not call back into the store.
	OnEvict func(n int)
	// Now is the clock for entries added without a time (default time.Now).
	Now func() time.Time
}

// Stats is a snapshot of the store.
type Stats struct {
	// Rows is the number of entries held; Bytes their stored size.
	Rows  int   `json:"rows"`
	Bytes int64 `json:"bytes"`
	// Evicted counts entries evicted for space since the store was first created.
	Evicted uint64 `json:"evicted"`
	// Expired counts entries dropped for age (Options.MaxAge) since the store was created.
	Expired uint64 `json:"expired"`
}

type item struct {
	seq  uint64
	size int64
	at   int64 // Entry.Time in Unix nanoseconds; 0: not read yet (loaded by Open)
}

// Store is a bounded FIFO of quarantined rows. It is safe for concurrent use.
type Store struct {
	rows devicedb.Namespace
	meta devicedb.Namespace
	opts Options

	mu      sync.Mutex
	queue   []item // oldest first, from head
	head    int
	bytes   int64
	next    uint64
	evicted uint64
	expired uint64
}

var (
	keyEvicted = []byte("evicted")
	keyExpired = []byte("expired")
)

// Open loads the store kept in ns (entries under ns.Sub("rows"), counters in ns itself).
func Open(ns devicedb.Namespace, opts Options) (*Store, error) {
	if opts.MaxRows < 0 || opts.MaxBytes < 0 || opts.MaxAge < 0 {
		return nil, fmt.Errorf("%w: max rows %d, max bytes %d, max age %v", ErrBadOptions, opts.MaxRows, opts.MaxBytes, opts.MaxAge)
	}
	if opts.MaxRows == 0 {
		opts.MaxRows = DefaultMaxRows
	}
	if opts.MaxBytes == 0 {
		opts.MaxBytes = DefaultMaxBytes
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Store{rows: ns.Sub("rows"), meta: ns, opts: opts, next: 1}
	err := s.rows.IterateKeys(false, func(k []byte, size int64) error {
		if len(k) != 8 {
			return fmt.Errorf("%w: key of %d bytes", ErrCorrupt, len(k))
		}
		seq := binary.BigEndian.Uint64(k)
		s.queue = append(s.queue, item{seq: seq, size: size})
		s.bytes += size
		s.next = seq + 1
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("open quarantine: %w", err)
	}
	for _, c := range []struct {
		key []byte
		v   *uint64
	}{{keyEvicted, &s.evicted}, {keyExpired, &s.expired}} {
		switch b, err := s.meta.Get(c.key); {
		case errors.Is(err, devicedb.ErrNotFound):
		case err != nil:
			return nil, fmt.Errorf("open quarantine: %w", err)
		case len(b) == 8:
			*c.v = binary.BigEndian.Uint64(b)
		default:
			return nil, fmt.Errorf("open quarantine: %w: %s counter of %d bytes", ErrCorrupt, c.key, len(b))
		}
	}
	return s, nil
}

// Expire drops the entries older than Options.MaxAge at now, oldest first, and returns how
// many it dropped (none without MaxAge). Add does the same before it stores.
func (s *Store) Expire(now time.Time) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.expireLocked(now)
}

// expireLocked drops expired entries from the head of the queue. An entry's time is read from
// the database the first time it reaches the head after Open (the queue is rebuilt from keys
// only). Entries are in arrival order, so the first one young enough ends the walk; an entry
// that does not decode counts as expired (it can only be skipped by Iterate anyway).
func (s *Store) expireLocked(now time.Time) (int, error) {
	if s.opts.MaxAge <= 0 {
		return 0, nil
	}
	cutoff := now.Add(-s.opts.MaxAge).UnixNano()
	n := 0
	var freed int64
	for i := s.head; i < len(s.queue); i++ {
		it := &s.queue[i]
		if it.at == 0 {
			b, err := s.rows.Get(seqKey(it.seq))
			if err != nil && !errors.Is(err, devicedb.ErrNotFound) {
				return 0, fmt.Errorf("quarantine expire: %w", err)
			}
			it.at = 1 // undecodable or gone: expire it
			if e, err := decode(it.seq, b); err == nil && !e.Time.IsZero() {
				it.at = e.Time.UnixNano()
			}
		}
		if it.at >= cutoff {
			break
		}
		n++
		freed += it.size
	}
	if n == 0 {
		return 0, nil
	}
	expired := s.expired + uint64(n)
	gone := s.queue[s.head : s.head+n]
	err := s.meta.Update(func(tx *devicedb.Txn) error {
		rt := tx.Sub("rows")
		for _, it := range gone {
			if err := rt.Delete(seqKey(it.seq)); err != nil {
				return err
			}
		}
		return tx.Set(keyExpired, binary.BigEndian.AppendUint64(nil, expired))
	})
	if err != nil {
		return 0, fmt.Errorf("quarantine expire: %w", err)
	}
	s.head += n
	s.bytes -= freed
	s.expired = expired
	s.compactLocked()
	return n, nil
}

// compactLocked drops the consumed front of the queue once it is more than half of it.
func (s *Store) compactLocked() {
	if s.head > len(s.queue)/2 {
		s.queue = append(s.queue[:0], s.queue[s.head:]...)
		s.head = 0
	}
}

func seqKey(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }

// Add stores entries in order, setting each one's Seq (and Time, where zero). When the bounds
// are exceeded the oldest entries (including, if need be, some of these) are evicted and
// counted. Entries are written in transactions of at most 256 KiB; on an error the entries
// of the failed transaction and those after it are not stored.
func (s *Store) Add(entries ...Entry) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.expireLocked(s.opts.Now()); err != nil {
		return err
	}
	for len(entries) > 0 {
		var (
			vals [][]byte
			ats  []int64
		)
		var size int64
		n := 0
		for ; n < len(entries); n++ {
			e := &entries[n]
			if e.Time.IsZero() {
				e.Time = s.opts.Now().UTC()
			}
			e.Seq = s.next + uint64(n)
			b, err := encode(*e)
			if err != nil {
				return err
			}
			if n > 0 && size+int64(len(b)) > maxTxnBytes {
				break
			}
			vals = append(vals, b)
			ats = append(ats, max(e.Time.UnixNano(), 1))
			size += int64(len(b))
		}
		if err := s.write(vals, ats); err != nil {
			return err
		}
		entries = entries[n:]
	}
	return nil
}

// write stores one batch of encoded entries (times ats) with seqs s.next.. and evicts what the
// bounds require, in one transaction; the in-memory queue changes only after the commit.
func (s *Store) write(vals [][]byte, ats []int64) error {
	live := s.queue[s.head:]
	total := len(live) + len(vals)
	bytes := s.bytes
	for _, v := range vals {
		bytes += int64(len(v))
	}
	// Evict from the front of live, then of the new batch, until both bounds hold.
	evictOld, evictNew := 0, 0
	for total > s.opts.MaxRows || bytes > s.opts.MaxBytes {
		if evictOld < len(live) {
			bytes -= live[evictOld].size
			evictOld++
		} else {
			bytes -= int64(len(vals[evictNew]))
			evictNew++
		}
		total--
	}
	evicted := s.evicted + uint64(evictOld+evictNew)
	err := s.meta.Update(func(tx *devicedb.Txn) error {
		rt := tx.Sub("rows")
		for _, it := range live[:evictOld] {
			if err := rt.Delete(seqKey(it.seq)); err != nil {
				return err
			}
		}
		for i := evictNew; i < len(vals); i++ {
			if err := rt.Set(seqKey(s.next+uint64(i)), vals[i]); err != nil {
				return err
			}
		}
		if evictOld+evictNew > 0 {
			return tx.Set(keyEvicted, binary.BigEndian.AppendUint64(nil, evicted))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("quarantine write: %w", err)
	}
	s.head += evictOld
	for i := evictNew; i < len(vals); i++ {
		s.queue = append(s.queue, item{s.next + uint64(i), int64(len(vals[i])), ats[i]})
	}
	s.bytes = bytes
	s.next += uint64(len(vals))
	if n := evictOld + evictNew; n > 0 {
		s.evicted = evicted
		if s.opts.OnEvict != nil {
			s.opts.OnEvict(n)
		}
	}
	s.compactLocked()
	return nil
}

// Stats returns the store's size and eviction count.
func (s *Store) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Stats{Rows: len(s.queue) - s.head, Bytes: s.bytes, Evicted: s.evicted, Expired: s.expired}
}

// Iterate calls fn with each stored entry, oldest first, until fn returns an error (ErrStop
// ends early without one). Entries that cannot be decoded are skipped and counted in skipped.
// Entries added or evicted during the walk may or may not be seen.
func (s *Store) Iterate(fn func(Entry) error) (skipped int, err error) {
	s.mu.Lock()
	var start []byte
	if s.head < len(s.queue) {
		start = seqKey(s.queue[s.head].seq)
	}
	s.mu.Unlock()
	err = s.rows.IterateFrom(start, func(k, v []byte) error {
		if len(k) != 8 {
			skipped++
			return nil
		}
		e, err := decode(binary.BigEndian.Uint64(k), v)
		if err != nil {
			skipped++
			return nil
		}
		return fn(e)
	})
	if errors.Is(err, devicedb.ErrStop) {
		err = nil
	}
	return skipped, err
}
