package node

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/driftline/driftline/hub/command"
	"github.com/driftline/driftline/hub/state"
	"github.com/driftline/driftline/internal/testhelp"
)

// BenchmarkRetentionReclaims measures what retention takes back: retentionDevices devices, each
// with retentionChanges desired-state changes (an audit entry each) and as many model versions it
// reported running one after the other (a runs edge each, all but the last closed), then one
// retention pass (--runs-retention and --audit-retention, everything old). It reports the Raft
// snapshot's size (the replicated state, what every node and every backup holds) per device per
// change before and after, and the audit archive's bytes per exported entry. Sizes, not speeds:
// run with -benchtime 1x. go test -run '^$' -bench RetentionReclaims -benchtime 1x ./hub/node
func BenchmarkRetentionReclaims(b *testing.B) {
	const retentionDevices, retentionChanges = 200, 10
	dir, adir := b.TempDir(), filepath.Join(b.TempDir(), "archive")
	n, err := Start(context.Background(), Config{DataDir: dir, NodeID: "n1", HTTPAddr: "127.0.0.1:0", RaftAddr: "127.0.0.1:0",
		RunsRetention: time.Hour, AuditRetention: time.Hour, AuditArchiveDir: adir, RetentionEvery: time.Hour,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	defer n.Close()
	ctx := context.Background()
	testhelp.WaitFor(b, 20*time.Second, "a ready leader", func() bool { return n.store.IsLeader() && n.store.Ready() })
	apply := func(t command.Type, body any) {
		env, err := command.New(t, "", 0, "bench", body)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := n.store.Apply(ctx, env); err != nil {
			b.Fatal(err)
		}
	}
	uploadAndApprove(b, n, "m")
	snapshotBytes := func() int64 {
		if err := n.store.Snapshot(); err != nil && !strings.Contains(err.Error(), "nothing new") {
			b.Fatal(err)
		}
		// The newest snapshot's state file (raft keeps two snapshots).
		snaps, err := filepath.Glob(filepath.Join(dir, "raft", "snapshots", "*", "state.bin"))
		if err != nil || len(snaps) == 0 {
			b.Fatalf("no snapshot: %v", err)
		}
		var newest os.FileInfo
		for _, p := range snaps {
			if fi, err := os.Stat(p); err == nil && (newest == nil || fi.ModTime().After(newest.ModTime())) {
				newest = fi
			}
		}
		return newest.Size()
	}
	base := snapshotBytes()
	for i := 0; i < retentionDevices; i++ {
		id := fmt.Sprintf("edge-%05d", i)
		apply(command.TypeDeviceCreate, state.DeviceCreate{ID: id, TokenHash: strings.Repeat("a", 64)})
	}
	for c := 1; c <= retentionChanges; c++ {
		obs := make([]state.DeviceObservation, retentionDevices)
		for i := range obs {
			id := fmt.Sprintf("edge-%05d", i)
			apply(command.TypeDeviceDesiredSet, state.DeviceDesiredSet{ID: id, Model: "m", Version: c % 2})
			v := c
			obs[i] = state.DeviceObservation{ID: id, Reported: &state.Reported{Rev: int64(c),
				Models: map[string]state.ReportedModel{"m": {Active: &v, State: "active"}}},
				Health: &state.HealthSummary{Model: "m", Version: v, Rows: 600, DriftShare: 0.1, At: int64(c)}}
		}
		apply(command.TypeDeviceTelemetry, state.DeviceTelemetry{Devices: obs})
	}
	b.ResetTimer()
	for range b.N {
		before := snapshotBytes()
		res, err := n.retentionOnce(ctx, time.Now().Add(24*time.Hour))
		if err != nil {
			b.Fatal(err)
		}
		after := snapshotBytes()
		var archive int64
		entries, _ := os.ReadDir(adir)
		for _, e := range entries {
			if fi, err := e.Info(); err == nil {
				archive += fi.Size()
			}
		}
		per := float64(retentionDevices * retentionChanges)
		b.ReportMetric(float64(before-base)/per, "B/device/change(before)")
		b.ReportMetric(float64(after-base)/per, "B/device/change(after)")
		b.ReportMetric(float64(archive)/float64(max(res.AuditEntries, 1)), "archive-B/audit-entry")
		b.Logf("snapshot %d -> %d bytes (base %d); pruned %d runs edges, %d audit entries; archive %d bytes",
			before, after, base, res.RunsEdges, res.AuditEntries, archive)
	}
}
