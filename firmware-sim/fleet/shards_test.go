package fleet

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/driftline/driftline/agent/devicedb"
	"github.com/driftline/driftline/internal/testhelp"
	"github.com/driftline/driftline/shared/kv"
)

// TestShardsSpreadAgents: a fleet of more than 500 agents spreads their namespaces over several
// databases by default (one per 500: every badger database serializes its commits and reads,
// and 10,000 agents queued behind one), each agent's on the database its id picks, found again
// by a later run and by DBDir.
func TestShardsSpreadAgents(t *testing.T) {
	cfg := Config{Devices: 1200}
	cfg.defaults()
	if cfg.DBShards != 3 {
		t.Fatalf("1,200 agents: %d databases by default, want 3", cfg.DBShards)
	}
	dir := t.TempDir()
	log := testhelp.Logger(t)
	s, err := openShards(dir, cfg.DBShards, log)
	if err != nil {
		t.Fatal(err)
	}
	used := map[*devicedb.DB]int{}
	for i := range 60 {
		id := fmt.Sprintf("fleet-%05d", i)
		db, _ := s.forDevice(dir, id)
		used[db]++
		if err := db.Namespace(id).Set([]byte("k"), []byte(id)); err != nil {
			t.Fatal(err)
		}
	}
	if len(used) != 3 {
		t.Fatalf("60 agents on %d of 3 databases: %v", len(used), used)
	}
	if err := s.close(); err != nil {
		t.Fatal(err)
	}
	// A later run asking for another number keeps the state dir's.
	s, err = openShards(dir, 7, log)
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	if len(s) != 3 {
		t.Fatalf("reopened with 7: %d databases, want the kept 3", len(s))
	}
	for i := range 60 {
		id := fmt.Sprintf("fleet-%05d", i)
		db, sdir := s.forDevice(dir, id)
		if v, err := db.Namespace(id).Get([]byte("k")); err != nil || string(v) != id {
			t.Fatalf("%s after reopening: %q, %v", id, v, err)
		}
		if d, err := DBDir(dir, id); err != nil || d != sdir {
			t.Fatalf("DBDir(%s) = %q, %v; want %q", id, d, err, sdir)
		}
	}
}

// TestShardsKeepOldStateDir: a state dir of fleet mode before shards (one database in db/) is
// one shard, whatever is asked, so its agents find their state again.
func TestShardsKeepOldStateDir(t *testing.T) {
	dir := t.TempDir()
	old, err := devicedb.OpenProfile(filepath.Join(dir, "db"), kv.Fleet)
	if err != nil {
		t.Fatal(err)
	}
	if err := old.Namespace("fleet-00001").Set([]byte("k"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	s, err := openShards(dir, 20, testhelp.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	if len(s) != 1 {
		t.Fatalf("old state dir: %d databases, want 1", len(s))
	}
	db, _ := s.forDevice(dir, "fleet-00001")
	if v, err := db.Namespace("fleet-00001").Get([]byte("k")); err != nil || string(v) != "v" {
		t.Fatalf("old agent state: %q, %v", v, err)
	}
	if err := os.WriteFile(filepath.Join(dir, ShardsFile), []byte("none\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := shardCount(dir, 2); err == nil {
		t.Fatal("a damaged db-shards file was taken")
	}
}
