// Package kv opens the badger databases that Driftline keeps on disk, with options sized for the
// process that owns them, and runs their value-log garbage collection.
//
// Every on-disk store of a process lives in one badger database with a key prefix per purpose
// (see ../shared/PITFALLS.md: several databases per process each carry their own memtables,
// caches and compactors).
package kv

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Profile selects how a database is sized.
type Profile int

const (
	// Server is for the hub: default-sized memtables and caches, synchronous writes so that the
	// Raft log and stable store survive a power loss.
	Server Profile = iota + 1
	// State is for the hub's replicated state machine beside a synced Raft log: Server's
	// value log and caches with 16 MiB memtables (stateMemTable), without a sync on every
	// commit (the log makes applied commands durable).
	State
	// Edge is for the agent: small memtables, a tiny block cache and small value-log files so a
	// device stays within its memory goal. Writes are not synced on every commit.
	Edge
	// Test is for unit tests: everything in memory.
	Test
	// RaftLog is for the hub's Raft log and stable store: Server's synchronous writes with small
	// memtables and block cache. See raftLogMemTable.
	RaftLog
	// Fleet is for the databases that simulated agents share in firmware-sim's fleet mode (one
	// per ~500 agents): State's value log, 16 MiB memtables and a 16 MiB block cache (a fleet
	// process opens tens of them), and no conflict detection. Every read-modify-write of the
	// agent's stores is serialized by its owner's mutex, so badger's conflict detection only
	// costs: with thousands of agents' transactions overlapping, its list of committed
	// transactions stays long and every commit scans it.
	Fleet
)

// raftLogMemTable and raftLogBlockCache size the Raft log's database (RaftLog). Every memtable
// is a skiplist arena badger allocates in full on the Go heap when it opens one (MemTableSize
// plus 30 % for the largest batch: 83 MB at badger's default 64 MiB), and a live arena also
// raises the garbage collector's heap goal by its size: a hub idled at ~450 MiB heap goal with
// two 64 MiB memtables. The Raft log needs none of that: its entries above ValueThreshold (1 KiB:
// telemetry batches, uploads, wave starts) go to the value log, so a memtable holds keys, value
// pointers and the small entries, and raftstore splits a batch badger refuses
// (ErrTxnTooBig) into several transactions. Its reads are the newest entries (replication to
// followers, applying), mostly still in the memtable.
const (
	raftLogMemTable   = 8 << 20
	raftLogBlockCache = 8 << 20
)

// stateMemTable sizes the state machine's memtables (State): 21 MB of arena each instead of 83 MB
// at badger's 64 MiB, measured at 10,000 connected agents as 94 MB of live heap that the garbage
// collector's goal then raised by half again (issue 18, docs/benchmarks.md). Its largest
// transaction is one command and must fit in 15 % of a memtable (2.4 MB and 26,214 writes):
// a part of a rollout writes a few keys for each of its 1,000 devices (hub/state
// DefaultPartDevices; their desired documents above 1 KiB go to the value log), a telemetry
// batch is split by the store when badger refuses it, and the chunk sweep deletes at most
// hub/node's sweep bound per command. hub/state's TestHubTransactionsFit applies them on these
// options.
const stateMemTable = 16 << 20

// fleetMemTable is a fleet-mode database's memtable and block cache size: an agent's largest
// transaction is well below 15 % of it (the Edge profile of one device has 4 MiB memtables).
const fleetMemTable = 16 << 20

// Options returns badger options for dir sized for p.
func Options(dir string, p Profile) badger.Options {
	opts := badger.DefaultOptions(dir).WithLogger(slogLogger{})
	switch p {
	case Server:
		// Artifact chunks (~64 KiB) and the Raft entries carrying them go to the value log
		// (values above 1 KiB); the LSM tree keeps the small state documents. Memory stays
		// bounded whatever the uploads: 3 memtables of 64 MiB (a transaction may hold ~9.6 MB)
		// and a 64 MiB block cache.
		opts = opts.WithSyncWrites(true).
			WithValueLogFileSize(256 << 20).
			WithValueThreshold(1 << 10).
			WithNumMemtables(3).
			WithBlockCacheSize(64 << 20)
	case State, Fleet:
		opts = opts.WithSyncWrites(false).
			WithValueLogFileSize(256 << 20).
			WithValueThreshold(1 << 10).
			WithMemTableSize(stateMemTable).
			WithNumMemtables(3).
			WithBlockCacheSize(64 << 20)
		if p == Fleet {
			opts = opts.WithMemTableSize(fleetMemTable).
				WithBlockCacheSize(fleetMemTable).
				WithDetectConflicts(false)
		}
	case RaftLog:
		opts = opts.WithSyncWrites(true).
			WithValueLogFileSize(256 << 20).
			WithValueThreshold(1 << 10).
			WithMemTableSize(raftLogMemTable).
			WithNumMemtables(2).
			WithBlockCacheSize(raftLogBlockCache)
	case Edge:
		// The largest batch is 15% of MemTableSize and ValueThreshold must stay below it.
		opts = opts.WithMemTableSize(4 << 20).
			WithNumMemtables(2).
			WithNumLevelZeroTables(2).
			WithNumLevelZeroTablesStall(4).
			WithBlockCacheSize(1 << 20).
			WithIndexCacheSize(1 << 20).
			// Values above 1 KiB (chunks, buffered reports) go to the value log instead of
			// churning the small memtables and L0 tables (measured by the agent's pull
			// benchmark: 120-135 MiB anonymous memory at 64 KiB, 40-53 MiB at 1 KiB).
			WithValueThreshold(1 << 10).
			WithValueLogFileSize(16 << 20).
			WithNumCompactors(2).
			WithSyncWrites(false)
	case Test:
		opts = badger.DefaultOptions("").WithInMemory(true).WithLogger(nil).
			WithMemTableSize(32 << 20).WithNumMemtables(2).WithBlockCacheSize(1 << 20)
	}
	return opts
}

// Open opens (creating if needed) the database in dir with the options of profile p. For the
// hub's profiles (Server, State, RaftLog) it first checks that the MANIFEST describes the table
// files present and that every table's checksums hold: a damaged database is refused with an
// error naming the file (wrapping ErrDamaged), never opened short of part of its data.
//
// A database left with memtable logs of larger memtables than p's (a crash under a release that
// sized them larger, as the Raft log's were before RaftLog) is first opened with memtables as
// large as its logs and closed, which flushes them into tables: replaying such a log into a
// smaller memtable would stop the process (badger asserts that its arena is large enough).
func Open(dir string, p Profile) (*badger.DB, error) {
	opts := Options(dir, p)
	if p == Server || p == State || p == RaftLog {
		if err := checkManifest(dir, opts); err != nil {
			return nil, err
		}
	}
	if err := flushLargerMemtables(dir, opts); err != nil {
		return nil, err
	}
	db, err := badger.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("open badger %s: %w", dir, err)
	}
	return db, nil
}

// flushLargerMemtables opens and closes the database in dir with memtables sized for its largest
// memtable log (NNNNN.mem: badger makes each twice its MemTableSize) when that is larger than
// opts' memtables (see Open).
func flushLargerMemtables(dir string, opts badger.Options) error {
	if opts.InMemory || dir == "" {
		return nil
	}
	paths, err := filepath.Glob(filepath.Join(dir, "*.mem"))
	if err != nil {
		return err
	}
	var largest int64
	for _, path := range paths {
		if fi, err := os.Stat(path); err == nil {
			largest = max(largest, fi.Size()/2)
		}
	}
	if largest <= opts.MemTableSize {
		return nil
	}
	db, err := badger.Open(opts.WithMemTableSize(largest))
	if err != nil {
		return fmt.Errorf("open badger %s to flush its %d MiB memtables: %w", dir, largest>>20, err)
	}
	if err := db.Close(); err != nil {
		return fmt.Errorf("close badger %s after flushing its %d MiB memtables: %w", dir, largest>>20, err)
	}
	return nil
}

// RunGC runs value-log garbage collection every interval until ctx is done. Each round calls
// RunValueLogGC until it reports nothing left to collect.
func RunGC(ctx context.Context, db *badger.DB, interval time.Duration, log *slog.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for n := 0; n < 64; n++ {
			err := db.RunValueLogGC(0.5)
			if err == nil {
				continue
			}
			if !errors.Is(err, badger.ErrNoRewrite) && !errors.Is(err, badger.ErrRejected) && log != nil {
				log.Warn("badger value-log gc", "err", err)
			}
			break
		}
	}
}

// slogLogger sends badger's warnings and errors to the process's default slog logger; its info
// and debug chatter is dropped.
type slogLogger struct{}

func (slogLogger) Errorf(f string, args ...any) {
	slog.Error("badger: " + strings.TrimSpace(fmt.Sprintf(f, args...)))
}

func (slogLogger) Warningf(f string, args ...any) {
	slog.Warn("badger: " + strings.TrimSpace(fmt.Sprintf(f, args...)))
}

func (slogLogger) Infof(string, ...any)  {}
func (slogLogger) Debugf(string, ...any) {}
