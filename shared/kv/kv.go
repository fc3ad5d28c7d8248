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
	// sizing without a sync on every commit (the log makes applied commands durable).
	State
	// Edge is for the agent: small memtables, a tiny block cache and small value-log files so a
	// device stays within its memory goal. Writes are not synced on every commit.
	Edge
	// Test is for unit tests: everything in memory.
	Test
	// Fleet is for the one database that thousands of simulated agents share in firmware-sim's
	// fleet mode: State's sizing, and no conflict detection. Every read-modify-write of the
	// agent's stores is serialized by its owner's mutex, so badger's conflict detection only
	// costs: with thousands of agents' transactions overlapping, its list of committed
	// transactions stays long and every commit scans it.
	Fleet
)

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
			WithNumMemtables(3).
			WithBlockCacheSize(64 << 20).
			WithDetectConflicts(p != Fleet)
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
// hub's profiles (Server, State) it first checks that the MANIFEST describes the table files
// present and that every table's checksums hold: a damaged database is refused with an error
// naming the file (wrapping ErrDamaged), never opened short of part of its data.
func Open(dir string, p Profile) (*badger.DB, error) {
	opts := Options(dir, p)
	if p == Server || p == State {
		if err := checkManifest(dir, opts); err != nil {
			return nil, err
		}
	}
	db, err := badger.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("open badger %s: %w", dir, err)
	}
	return db, nil
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
