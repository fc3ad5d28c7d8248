package node

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/driftline/driftline/hub/store"
	"github.com/driftline/driftline/internal/testhelp"
)

// TestScheduledBackups: the leader writes a checked backup every interval and keeps the newest
// --backup-keep; the disk gauges are served.
func TestScheduledBackups(t *testing.T) {
	dir, bdir := t.TempDir(), filepath.Join(t.TempDir(), "backups")
	n, err := Start(context.Background(), Config{
		DataDir: dir, NodeID: "n1", HTTPAddr: "127.0.0.1:0", RaftAddr: "127.0.0.1:0",
		BackupDir: bdir, BackupEvery: 100 * time.Millisecond, BackupKeep: 2,
		Logger: testhelp.Logger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	ok := func() float64 {
		mfs, _ := n.registry.Gather()
		for _, mf := range mfs {
			if mf.GetName() == metricBackupsTotal {
				for _, m := range mf.GetMetric() {
					if m.GetLabel()[0].GetValue() == "ok" {
						return m.GetCounter().GetValue()
					}
				}
			}
		}
		return 0
	}
	testhelp.WaitFor(t, 20*time.Second, "four scheduled backups", func() bool { return ok() >= 4 })
	var names []string
	testhelp.WaitFor(t, 5*time.Second, "two kept", func() bool {
		entries, _ := os.ReadDir(bdir)
		names = names[:0]
		for _, e := range entries {
			if strings.HasSuffix(e.Name(), ".backup") {
				names = append(names, e.Name())
			}
		}
		return len(names) == 2
	})
	for _, name := range names {
		f, err := os.Open(filepath.Join(bdir, name))
		if err != nil {
			t.Fatal(err)
		}
		info, err := store.ReadBackup(f, nil, nil)
		f.Close()
		if err != nil || info.Index == 0 {
			t.Fatalf("%s: %+v, %v", name, info, err)
		}
	}
	if c, err := testutil.GatherAndCount(n.registry, metricDiskUsed, metricDiskFree, metricBackupLastSuccess); err != nil || c < 6 {
		t.Fatalf("disk and backup gauges: %d series, %v", c, err)
	}
}

func TestPruneBackupsKeepsNewest(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"driftline-20260101T000000.000Z-1.backup", "driftline-20260102T000000.000Z-5.backup",
		"driftline-20260103T000000.000Z-9.backup", "notes.txt"} {
		os.WriteFile(filepath.Join(dir, name), nil, 0o600)
	}
	if err := pruneBackups(dir, 1); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dir)
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	if strings.Join(got, ",") != "driftline-20260103T000000.000Z-9.backup,notes.txt" {
		t.Fatalf("left %v", got)
	}
}
