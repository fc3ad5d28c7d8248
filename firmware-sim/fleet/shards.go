package fleet

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/driftline/driftline/agent/devicedb"
	"github.com/driftline/driftline/shared/kv"
)

// ShardsFile, in the state dir, keeps the number of databases the agents' namespaces are spread
// over (see openShards): a device's shard follows from its id and that number, so a later run
// must use the same number to find each agent's state again.
const ShardsFile = "db-shards"

// agentsPerShard is the default share of one database (Config.DBShards): every commit and
// every read transaction of a badger database goes through its one commit lock and its
// oracle's watermark goroutine, and with 10,000 agents on one database thousands of goroutines
// queued there during a rollout (docs/benchmarks.md, "Fleet mode at 10,000 agents").
const agentsPerShard = 500

// shards are the badger databases of one fleet process; an agent's namespace lives in one.
type shards []*devicedb.DB

// shardDir returns the directory of shard i under stateDir: db for shard 0 (the one database of
// fleet mode before shards, so an old state dir is shard 0 of 1), then db-1, db-2, ...
func shardDir(stateDir string, i int) string {
	if i == 0 {
		return filepath.Join(stateDir, "db")
	}
	return filepath.Join(stateDir, "db-"+strconv.Itoa(i))
}

// shardOf returns the shard of device id among n: a hash of the id, so that it does not depend
// on the fleet's size or order.
func shardOf(id string, n int) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(id))
	return int(h.Sum32() % uint32(n))
}

// shardCount returns how many shards the state dir's agents use: the number kept in ShardsFile;
// else 1 when the state dir holds a database of a run before shards; else want (at least 1).
// It keeps the number in ShardsFile.
func shardCount(stateDir string, want int) (int, error) {
	if n, err := keptShardCount(stateDir); n != 0 || err != nil {
		return n, err
	}
	n := max(want, 1)
	if _, err := os.Stat(filepath.Join(shardDir(stateDir, 0), "MANIFEST")); err == nil {
		n = 1 // a database of fleet mode before shards: every agent's state is there
	}
	if err := os.WriteFile(filepath.Join(stateDir, ShardsFile), []byte(strconv.Itoa(n)+"\n"), 0o600); err != nil {
		return 0, err
	}
	return n, nil
}

// keptShardCount returns the number of databases kept in the state dir's ShardsFile; 0 when
// there is no such file.
func keptShardCount(stateDir string) (int, error) {
	path := filepath.Join(stateDir, ShardsFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || n < 1 {
		return 0, fmt.Errorf("%w: %s holds %q, not a number of databases", ErrConfig, path, strings.TrimSpace(string(b)))
	}
	return n, nil
}

// openShards opens the state dir's shards (shardCount of want), each with shared/kv's Fleet
// profile; on error it closes what it opened.
func openShards(stateDir string, want int, log *slog.Logger) (shards, error) {
	n, err := shardCount(stateDir, want)
	if err != nil {
		return nil, err
	}
	if n != max(want, 1) {
		log.Info("fleet: the state dir keeps its number of databases", "databases", n, "asked", want, "file", filepath.Join(stateDir, ShardsFile))
	}
	s := make(shards, 0, n)
	for i := range n {
		db, err := devicedb.OpenProfile(shardDir(stateDir, i), kv.Fleet)
		if err != nil {
			s.close()
			return nil, err
		}
		s = append(s, db)
	}
	return s, nil
}

// forDevice returns the database holding device id's namespace and its directory.
func (s shards) forDevice(stateDir, id string) (*devicedb.DB, string) {
	i := shardOf(id, len(s))
	return s[i], shardDir(stateDir, i)
}

// runGC runs every shard's value-log GC until ctx ends.
func (s shards) runGC(ctx context.Context, interval time.Duration, log *slog.Logger) {
	for _, db := range s {
		go db.RunGC(ctx, interval, log)
	}
}

// close closes every shard and returns the first error.
func (s shards) close() error {
	var first error
	for _, db := range s {
		if err := db.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// DBDir returns the directory of the database holding device id's state in a fleet state dir
// (for tools reading a stopped agent's state, e.g. agenttest.Outbox).
func DBDir(stateDir, id string) (string, error) {
	n, err := keptShardCount(stateDir)
	if err != nil {
		return "", err
	}
	return shardDir(stateDir, shardOf(id, max(n, 1))), nil
}
