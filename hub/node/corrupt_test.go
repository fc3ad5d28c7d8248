package node

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/driftline/driftline/internal/testhelp"
)

// seedDataDir runs a one-node hub in a fresh data dir, writes some state, takes a Raft snapshot
// and stops it cleanly, leaving badger tables (flushed at close), a snapshot and a signing key.
func seedDataDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	n, err := Start(context.Background(), Config{DataDir: dir, NodeID: "n1", HTTPAddr: "127.0.0.1:0", RaftAddr: "127.0.0.1:0",
		Logger: testhelp.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	var tok string
	testhelp.WaitFor(t, 10*time.Second, "admin token", func() bool {
		b, err := os.ReadFile(filepath.Join(dir, AdminTokenFile))
		tok = strings.TrimSpace(string(b))
		return err == nil && tok != ""
	})
	for i := range 50 {
		call(t, n, tok, http.MethodPost, "/api/v1/devices", map[string]any{"id": fmt.Sprintf("d%03d", i), "labels": map[string]string{"site": strings.Repeat("x", 200)}}, http.StatusCreated, nil)
	}
	if err := n.store.Snapshot(); err != nil {
		t.Fatal(err)
	}
	n.Close()
	return dir
}

// newest returns the files under dir/sub whose names end in suffix, newest name last.
func filesLike(t *testing.T, dir, pattern string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, pattern))
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(m)
	return m
}

func truncateHalf(t *testing.T, path string) {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, st.Size()/2); err != nil {
		t.Fatal(err)
	}
}

func flipBytes(t *testing.T, path string, at float64) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	i := int(float64(len(b)) * at)
	for j := i; j < i+16 && j < len(b); j++ {
		b[j] ^= 0xff
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestCorruptDataDirRefusesStart damages one file of a hub's data dir at a time (truncated or
// overwritten, as a torn write or a bad disk leaves it) and checks that the hub refuses to start
// with an error naming that file, instead of serving from a half-written state.
func TestCorruptDataDirRefusesStart(t *testing.T) {
	cases := []struct {
		name    string
		pattern string // glob under the data dir; the last match is damaged
		damage  func(*testing.T, string)
	}{
		{"signing key truncated", "signing.key", truncateHalf},
		{"state table corrupted", "db/*.sst", func(t *testing.T, p string) { flipBytes(t, p, 0.3) }},
		{"raft log table corrupted", "raftlog/*.sst", func(t *testing.T, p string) { flipBytes(t, p, 0.3) }},
		{"state manifest truncated", "db/MANIFEST", truncateHalf},
		{"snapshot truncated", "raft/snapshots/*/state.bin", truncateHalf},
		{"snapshot meta truncated", "raft/snapshots/*/meta.json", truncateHalf},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := seedDataDir(t)
			files := filesLike(t, dir, tc.pattern)
			if len(files) == 0 {
				all, _ := filepath.Glob(filepath.Join(dir, "*", "*"))
				t.Fatalf("no %s in the data dir: %v", tc.pattern, all)
			}
			victim := files[len(files)-1]
			tc.damage(t, victim)
			n, err := Start(context.Background(), Config{DataDir: dir, NodeID: "n1", HTTPAddr: "127.0.0.1:0", RaftAddr: "127.0.0.1:0",
				Logger: testhelp.Logger(t)})
			if err == nil {
				n.Close()
				t.Fatalf("the hub started with %s damaged", victim)
			}
			rel, _ := filepath.Rel(dir, victim)
			if !strings.Contains(err.Error(), rel) {
				t.Fatalf("error does not name %s: %v", rel, err)
			}
			t.Logf("refused: %v", err)
		})
	}
}
