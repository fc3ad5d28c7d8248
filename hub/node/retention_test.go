package node

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/driftline/driftline/hub/command"
	"github.com/driftline/driftline/hub/state"

	"github.com/driftline/driftline/internal/testhelp"
)

// TestRetentionOnLeader: with --runs-retention, --audit-retention and --audit-archive-dir a
// retention pass on the leader (retentionOnce, which the --retention-every loop runs) deletes closed runs edges older than the cutoff (the open one stays), exports the audit
// entries older than the cutoff into a file that verifies, prunes them through the export's last
// entry, and the kept log verifies from the checkpoint, which is the export's last hash.
func TestRetentionOnLeader(t *testing.T) {
	dir, adir := t.TempDir(), filepath.Join(t.TempDir(), "audit-archive")
	n, err := Start(context.Background(), Config{
		DataDir: dir, NodeID: "n1", HTTPAddr: "127.0.0.1:0", RaftAddr: "127.0.0.1:0",
		RunsRetention: 30 * 24 * time.Hour, AuditRetention: 90 * 24 * time.Hour, AuditArchiveDir: adir,
		RetentionEvery: time.Hour, // the pass is run by hand below, at a simulated time
		Logger:         testhelp.Logger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	testhelp.WaitFor(t, 20*time.Second, "leader chores", func() bool {
		_, err := os.Stat(n.AdminTokenPath())
		return n.store.IsLeader() && err == nil
	})
	ctx := context.Background()
	// The pass runs 200 days from now: the leader's first entries and those written "a day from
	// now" are older than the 90 days kept, the last one is not.
	now := time.Now().Add(200 * 24 * time.Hour)
	apply := func(typ command.Type, body any, at time.Time) {
		t.Helper()
		env, err := command.New(typ, "", 0, "test", body)
		if err != nil {
			t.Fatal(err)
		}
		env.Time = at.UnixMilli()
		if _, err := n.store.Apply(ctx, env); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(24 * time.Hour)
	apply(command.TypeDeviceCreate, state.DeviceCreate{ID: "d1", TokenHash: strings.Repeat("a", 64)}, old)
	for i, v := range []int{1, 2, 3} { // closes 1 and 2 two hundred days ago, 3 runs now
		v := v
		apply(command.TypeDeviceTelemetry, state.DeviceTelemetry{Devices: []state.DeviceObservation{{ID: "d1",
			Reported: &state.Reported{Rev: int64(i + 1), Models: map[string]state.ReportedModel{"m": {Active: &v, State: "active"}}}}}},
			old.Add(time.Duration(i)*time.Minute))
	}
	for i := 0; i < 5; i++ {
		apply(command.TypeDatasetCreate, state.DatasetCreate{Name: "old" + string(rune('a'+i))}, old.Add(time.Hour))
	}
	apply(command.TypeDatasetCreate, state.DatasetCreate{Name: "recent"}, now.Add(-time.Hour))
	r := n.Reader()
	var oldSeq uint64
	r.AuditRange(0, 0, func(e state.AuditEntry) error {
		if e.Time < now.Add(-90*24*time.Hour).UnixMilli() {
			oldSeq = e.Seq
		}
		return nil
	})
	if oldSeq == 0 {
		t.Fatal("no old audit entries to prune")
	}

	if e, err := r.RunsEdge("d1", "m", 1); err != nil || e.Until == 0 {
		t.Fatalf("closed runs edge before retention: %+v %v", e, err)
	}
	res, err := n.retentionOnce(ctx, now)
	if err != nil || res.RunsEdges != 2 || res.AuditEntries != int(oldSeq) {
		t.Fatalf("retention pass: %+v %v, want 2 runs edges and %d audit entries", res, err, oldSeq)
	}
	if _, err := r.RunsEdge("d1", "m", 1); !errors.Is(err, state.ErrNotFound) {
		t.Fatalf("closed old runs edge to m@1 kept: %v", err)
	}
	if _, err := r.RunsEdge("d1", "m", 2); !errors.Is(err, state.ErrNotFound) {
		t.Fatalf("closed old runs edge to m@2 kept: %v", err)
	}
	if e, err := r.RunsEdge("d1", "m", 3); err != nil || e.Until != 0 {
		t.Fatalf("the open runs edge must stay: %+v %v", e, err)
	}
	cp, _ := r.AuditCheckpoint()
	if cp.Seq != oldSeq {
		t.Fatalf("checkpoint %+v, want seq %d", cp, oldSeq)
	}
	var kept []state.AuditEntry
	r.AuditRange(0, 0, func(e state.AuditEntry) error { kept = append(kept, e); return nil })
	if len(kept) == 0 || kept[0].Seq != oldSeq+1 {
		t.Fatalf("kept log starts at %+v, want seq %d", kept, oldSeq+1)
	}
	if _, err := state.VerifyChain(cp.Hash, kept); err != nil {
		t.Fatalf("kept log does not verify from the checkpoint: %v", err)
	}
	f, err := os.Open(filepath.Join(adir, AuditExportName(1, oldSeq)))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	hdr, tr, err := state.ReadAuditExport(f, nil)
	if err != nil || hdr.FirstSeq != 1 || hdr.PrevHash != "" || tr.LastSeq != oldSeq || tr.LastHash != cp.Hash {
		t.Fatalf("export %+v %+v %v; checkpoint %+v", hdr, tr, err, cp)
	}
	var recent bool
	for _, e := range kept {
		recent = recent || e.Object == "dataset:recent"
	}
	if !recent {
		t.Fatal("a recent audit entry was pruned")
	}
}

// TestRetentionNeedsArchive: audit retention without an archive dir is refused at start, and so
// are negative durations.
func TestRetentionNeedsArchive(t *testing.T) {
	for _, cfg := range []Config{{AuditRetention: time.Hour}, {RunsRetention: -time.Hour}} {
		cfg.DataDir, cfg.HTTPAddr, cfg.RaftAddr = t.TempDir(), "127.0.0.1:0", "127.0.0.1:0"
		if n, err := Start(context.Background(), cfg); err == nil {
			n.Close()
			t.Fatalf("%+v: started", cfg)
		}
	}
}
