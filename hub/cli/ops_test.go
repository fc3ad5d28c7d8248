package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestOpsBadInput: each operations command exits non-zero with a message naming the fault.
func TestOpsBadInput(t *testing.T) {
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk.backup")
	os.WriteFile(junk, []byte("DLBACKUP1\n\x00\x00\x00\x05{\"fo"), 0o600)
	notBackup := filepath.Join(dir, "notes.txt")
	os.WriteFile(notBackup, []byte("hello"), 0o600)
	exists := filepath.Join(dir, "exists.backup")
	os.WriteFile(exists, nil, 0o600)
	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"hub", "serve", "--backup-dir", dir, "--backup-every", "10ms"}, ExitUsage, "--backup-every"},
		{[]string{"hub", "serve", "--backup-keep", "-1"}, ExitUsage, "--backup-keep"},
		{[]string{"hub", "serve", "--audit-retention", "720h"}, ExitUsage, "--audit-archive-dir"},
		{[]string{"hub", "serve", "--runs-retention", "-1h"}, ExitUsage, "--runs-retention"},
		{[]string{"hub", "serve", "--retention-every", "1ms"}, ExitUsage, "--retention-every"},
		{[]string{"hub", "serve", "--dead-node-timeout", "1s"}, ExitUsage, "at least 10s"},
		{[]string{"hub", "serve", "--peers", "hub2:8080"}, ExitUsage, "--peers"},
		{[]string{"audit", "export", filepath.Join(dir, "e.jsonl"), "--through", "3", "--before", "2026-01-01T00:00:00Z"}, ExitUsage, "exclude"},
		{[]string{"hub", "restore", junk, "--data", filepath.Join(dir, "a")}, ExitUsage, "truncated"},
		{[]string{"hub", "restore", notBackup, "--data", filepath.Join(dir, "b")}, ExitUsage, "not a driftline backup"},
		{[]string{"hub", "restore", filepath.Join(dir, "missing"), "--data", filepath.Join(dir, "c")}, ExitUsage, "no such file"},
		{[]string{"hub", "restore", junk}, ExitUsage, "--data"},
		{[]string{"hub", "restore", junk, "--data", filepath.Join(dir, "d"), "--raft", ""}, ExitUsage, "--raft"},
		{[]string{"hub", "backup", exists, "--hub", "http://127.0.0.1:1"}, ExitUsage, "--force"},
		{[]string{"hub", "backup", filepath.Join(dir, "new.backup"), "--hub", "http://127.0.0.1:1"}, ExitUnavailable, "unavailable"},
		{[]string{"hub", "backup", "-"}, ExitUsage, "file name"},
		{[]string{"hub", "status", "--hub", "ftp://x"}, ExitUsage, "hub URL"},
		{[]string{"cluster", "transfer-leadership", "a", "b"}, ExitUsage, "at most one"},
		{[]string{"cluster", "list", "extra"}, ExitUsage, "takes 0"},
	}
	for _, tc := range cases {
		r := runCLI(t, nil, tc.args...)
		if r.code != tc.code || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d saying %q", tc.args, r.code, r.stderr, tc.code, tc.want)
		}
	}
	if entries, _ := os.ReadDir(filepath.Join(dir, "a", "raft")); len(entries) != 0 {
		t.Errorf("a refused restore left %v", entries)
	}
	if _, err := os.Stat(filepath.Join(dir, "new.backup.partial")); !os.IsNotExist(err) {
		t.Errorf("a failed backup left its partial file: %v", err)
	}
}
