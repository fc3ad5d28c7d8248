// Package devicedb is the agent's durable key-value namespace.
//
// A process opens one badger database (Open, sized by shared/kv's Edge profile) and hands out
// Namespaces. A Namespace is a key prefix inside that database: every read, write, iteration and
// transaction through it stays inside its prefix, and Sub derives a child prefix for one purpose
// (the outbox, the chunk cache, the activation journal). A single agent uses DB.Root(); fleet mode
// (firmware-sim running thousands of agents in one process) gives each agent DB.Namespace(id) of one
// shared database, and the agent code cannot tell the difference.
//
// Key layout: a namespace's prefix is a sequence of segments 's', len(name), name; a key stored in
// the namespace is prefix, 'k', key. The tag byte keeps a namespace's own keys and its children's
// keys disjoint whatever bytes a key or a name holds.
package devicedb

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/driftline/driftline/shared/kv"
)

var (
	// ErrNotFound is returned by Get when the key does not exist in the namespace.
	ErrNotFound = errors.New("state: key not found")
	// ErrBadName is returned (by panic-free constructors, wrapped) when a namespace name is empty or
	// longer than 255 bytes.
	ErrBadName = errors.New("state: bad namespace name")
	// ErrStop may be returned by an Iterate callback to end the iteration early without an error.
	ErrStop = errors.New("state: stop iteration")
)

const (
	tagSub = 's'
	tagKey = 'k'
	// maxName is the longest namespace name; its length is stored in one byte.
	maxName = 255
)

// DB is the process's one badger database. It is safe for concurrent use.
type DB struct {
	db   *badger.DB
	sync *groupSync
}

// Open opens (creating if needed) the agent database in dir with shared/kv's Edge profile.
func Open(dir string) (*DB, error) { return OpenProfile(dir, kv.Edge) }

// OpenProfile is Open with another shared/kv sizing: fleet mode opens the one database its
// thousands of agents share with kv.Fleet (server-sized memtables and value-log files, no sync
// on every commit, no conflict detection), where the Edge sizing of one device would rotate and
// sync its small value-log files hundreds of times per rollout.
func OpenProfile(dir string, p kv.Profile) (*DB, error) {
	db, err := kv.Open(dir, p)
	if err != nil {
		return nil, fmt.Errorf("open agent state: %w", err)
	}
	return &DB{db: db, sync: &groupSync{}}, nil
}

// OpenInMemory opens an in-memory database (shared/kv's Test profile): for tests only, since
// nothing survives Close.
func OpenInMemory() (*DB, error) {
	db, err := kv.Open("", kv.Test)
	if err != nil {
		return nil, fmt.Errorf("open in-memory agent state: %w", err)
	}
	return &DB{db: db, sync: &groupSync{}}, nil
}

// Close flushes and closes the database. Namespaces derived from it must not be used afterwards.
func (d *DB) Close() error {
	if err := d.db.Close(); err != nil {
		return fmt.Errorf("close agent state: %w", err)
	}
	return nil
}

// RunGC runs badger's value-log garbage collection every interval until ctx is done.
func (d *DB) RunGC(ctx context.Context, interval time.Duration, log *slog.Logger) {
	kv.RunGC(ctx, d.db, interval, log)
}

// Root is the namespace of a single-agent process: the empty prefix.
func (d *DB) Root() Namespace {
	return Namespace{db: d.db, sync: d.sync}
}

// Namespace is Root().Sub(name): the namespace of one agent in fleet mode.
func (d *DB) Namespace(name string) Namespace {
	return d.Root().Sub(name)
}

// Namespace is a key prefix inside the agent database. The zero value is unusable; get one from
// DB.Root, DB.Namespace or Namespace.Sub. A Namespace is a small value, safe to copy and to use
// from several goroutines.
type Namespace struct {
	db     *badger.DB
	sync   *groupSync
	prefix []byte
}

// Sub returns the child namespace name of n. It panics if name is empty or longer than 255
// bytes: names are constants of the program or device ids checked by ValidName, never raw input.
func (n Namespace) Sub(name string) Namespace {
	if err := ValidName(name); err != nil {
		panic(err)
	}
	p := make([]byte, 0, len(n.prefix)+2+len(name))
	p = append(p, n.prefix...)
	p = append(p, tagSub, byte(len(name)))
	p = append(p, name...)
	return Namespace{db: n.db, sync: n.sync, prefix: p}
}

// ValidName reports whether name can name a namespace (1 to 255 bytes).
func ValidName(name string) error {
	if name == "" || len(name) > maxName {
		return fmt.Errorf("%w: length %d, want 1..%d", ErrBadName, len(name), maxName)
	}
	return nil
}

// key returns the badger key of k in n.
func (n Namespace) key(k []byte) []byte {
	out := make([]byte, 0, len(n.prefix)+1+len(k))
	out = append(out, n.prefix...)
	out = append(out, tagKey)
	return append(out, k...)
}

// keyPrefix is the badger prefix of all keys stored directly in n.
func (n Namespace) keyPrefix() []byte {
	return n.key(nil)
}

// Get returns a copy of the value of k, or ErrNotFound.
func (n Namespace) Get(k []byte) ([]byte, error) {
	var v []byte
	err := n.View(func(tx *Txn) error {
		var err error
		v, err = tx.Get(k)
		return err
	})
	return v, err
}

// Set stores v under k in its own transaction.
func (n Namespace) Set(k, v []byte) error {
	return n.Update(func(tx *Txn) error { return tx.Set(k, v) })
}

// Delete removes k; deleting a missing key is not an error.
func (n Namespace) Delete(k []byte) error {
	return n.Update(func(tx *Txn) error { return tx.Delete(k) })
}

// Iterate calls fn for each key stored directly in n (not in its children), in key order, or in
// reverse order when reverse is set. Keys are given without the namespace prefix. key and value
// are valid only during the call; copy them to keep them. fn returning ErrStop ends the iteration
// with a nil error; any other error ends it and is returned.
func (n Namespace) Iterate(reverse bool, fn func(key, value []byte) error) error {
	return n.View(func(tx *Txn) error { return tx.Iterate(reverse, fn) })
}

// IterateFrom is Iterate forward, starting at the first key >= start. A queue that deletes from
// its head should start past what it deleted: badger's iterator otherwise steps over every
// deletion marker from the beginning on each call, until compaction removes them.
func (n Namespace) IterateFrom(start []byte, fn func(key, value []byte) error) error {
	return n.View(func(tx *Txn) error { return tx.IterateFrom(start, fn) })
}

// IterateKeys is Iterate without reading values (cheaper: no value-log reads). size is the value's
// size in bytes.
func (n Namespace) IterateKeys(reverse bool, fn func(key []byte, size int64) error) error {
	return n.View(func(tx *Txn) error { return tx.IterateKeys(reverse, fn) })
}

// Sync forces what was written so far to stable storage. The Edge profile does not sync every
// commit (a killed process keeps its writes, a power loss may not); callers that order a write
// before a file-system change (the activation journal) call Sync in between. Concurrent calls
// share one badger sync that starts after all of them (group commit: in fleet mode thousands of
// agents share the database).
func (n Namespace) Sync() error {
	if err := n.sync.do(n.db.Sync); err != nil {
		return fmt.Errorf("sync agent state: %w", err)
	}
	return nil
}

// groupSync runs one sync for every caller waiting when it starts: a caller returns once a
// sync that began after its call has ended, so concurrent callers share it.
type groupSync struct {
	mu      sync.Mutex
	running bool
	waiting []chan error
}

func (g *groupSync) do(syncFn func() error) error {
	ch := make(chan error, 1)
	g.mu.Lock()
	g.waiting = append(g.waiting, ch)
	if !g.running {
		g.running = true
		go g.run(syncFn)
	}
	g.mu.Unlock()
	return <-ch
}

// run syncs for the callers waiting, again while new ones came during a sync, then stops.
func (g *groupSync) run(syncFn func() error) {
	for {
		g.mu.Lock()
		batch := g.waiting
		g.waiting = nil
		if len(batch) == 0 {
			g.running = false
			g.mu.Unlock()
			return
		}
		g.mu.Unlock()
		err := syncFn()
		for _, ch := range batch {
			ch <- err
		}
	}
}

// View runs fn in a read-only transaction scoped to n.
func (n Namespace) View(fn func(tx *Txn) error) error {
	return n.db.View(func(txn *badger.Txn) error {
		return fn(&Txn{txn: txn, ns: n})
	})
}

// Update runs fn in a read-write transaction scoped to n and commits it if fn returns nil. A
// conflict with a concurrent transaction returns an error wrapping badger.ErrConflict; a
// transaction larger than the database allows wraps badger.ErrTxnTooBig.
func (n Namespace) Update(fn func(tx *Txn) error) error {
	return n.db.Update(func(txn *badger.Txn) error {
		return fn(&Txn{txn: txn, ns: n})
	})
}
