package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/driftline/driftline/hub/command"
	"github.com/driftline/driftline/hub/state"
)

// BenchmarkDataDirGrowth measures how the data dir grows with devices and time: a fleet of
// growthDevices agents heartbeating every 10 s (the agent's default) with a health summary in every
// observation (worse than real: agents send one per window), batched the way hub/protocol batches
// them, for two simulated half-days, measured after a Raft snapshot and badger's value-log GC; then
// one desired-state change per device (audit entry and lineage edge). It reports bytes per device
// per simulated day and bytes per device per desired change. The clock is simulated: the figures
// are sizes, not speeds. Run: go test -run '^$' -bench DataDirGrowth -benchtime 1x ./hub/node
func BenchmarkDataDirGrowth(b *testing.B) {
	const (
		growthDevices = 200
		heartbeat     = 10 * time.Second
		halfDay       = 12 * time.Hour
	)
	dir := b.TempDir()
	n, err := Start(context.Background(), Config{DataDir: dir, NodeID: "n1", HTTPAddr: "127.0.0.1:0", RaftAddr: "127.0.0.1:0",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	defer n.Close()
	ctx := context.Background()
	deadline := time.Now().Add(20 * time.Second)
	for !n.store.IsLeader() || !n.store.Ready() {
		if time.Now().After(deadline) {
			b.Fatal("no leader")
		}
		time.Sleep(20 * time.Millisecond)
	}
	apply := func(t command.Type, body any, at int64) {
		env, err := command.New(t, "", 0, "bench", body)
		if err != nil {
			b.Fatal(err)
		}
		env.Time = at
		if _, err := n.store.Apply(ctx, env); err != nil {
			b.Fatal(err)
		}
	}
	ids := make([]string, growthDevices)
	for i := range ids {
		ids[i] = fmt.Sprintf("edge-%05d", i)
		apply(command.TypeDeviceCreate, state.DeviceCreate{ID: ids[i], Labels: map[string]string{"site": "s" + fmt.Sprint(i%7)},
			TokenHash: strings.Repeat("a", 64)}, 0)
	}
	var lastState int64 // db and snapshots: the state without the Raft log's tail
	settle := func() int64 {
		if err := n.store.Snapshot(); err != nil && !strings.Contains(err.Error(), "nothing new") {
			b.Fatal(err)
		}
		for _, db := range []*badger.DB{n.db, n.logDB} {
			if err := db.Flatten(1); err != nil {
				b.Fatal(err)
			}
			for db.RunValueLogGC(0.1) == nil {
			}
			if err := db.RunValueLogGC(0.1); err != nil && !errors.Is(err, badger.ErrNoRewrite) {
				b.Fatal(err)
			}
		}
		u := diskUse(dir)
		b.Logf("data dir %d bytes: db %d, raftlog %d, raft snapshots %d, other %d", u.TotalBytes, u.Bytes["db"], u.Bytes["raftlog"], u.Bytes["raft"], u.Bytes["other"])
		lastState = u.Bytes["db"] + u.Bytes["raft"]
		return u.TotalBytes
	}
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	one := 1
	simulate := func(from time.Time, d time.Duration) {
		// One telemetry command per heartbeat interval holding every device once (hub/protocol
		// batches per second; the bytes per observation are the same).
		for t := from; t.Before(from.Add(d)); t = t.Add(heartbeat) {
			obs := make([]state.DeviceObservation, len(ids))
			online := true
			for i, id := range ids {
				obs[i] = state.DeviceObservation{ID: id, Online: &online, LastSeen: t.UnixMilli(),
					Reported: &state.Reported{Rev: 1, AgentVersion: "v1.0.0", Models: map[string]state.ReportedModel{"m": {Active: &one, State: "active"}}},
					Health:   &state.HealthSummary{Model: "m", Version: 1, Rows: 600, Invalid: int64(i % 3), DriftShare: 0.05, At: t.UnixMilli()}}
			}
			apply(command.TypeDeviceTelemetry, state.DeviceTelemetry{Devices: obs}, t.UnixMilli())
		}
	}
	b.ResetTimer()
	for range b.N {
		base := settle()
		baseState := lastState
		simulate(start, halfDay)
		half := settle()
		simulate(start.Add(halfDay), halfDay)
		day := settle()
		b.ReportMetric(float64(lastState-baseState)/growthDevices, "B/device/day(state)")
		b.Logf("data dir: %d bytes with %d devices, %d after 12 h, %d after 24 h", base, growthDevices, half, day)
		perDay := float64(day-base) / growthDevices
		secondHalf := float64(day-half) * 2 / growthDevices
		b.ReportMetric(perDay, "B/device/day")
		b.ReportMetric(secondHalf, "B/device/day(2nd-half)")

		// One desired-state change per device: audit entry and lineage edge.
		uploadAndApprove(b, n, "m")
		before := settle()
		for _, id := range ids {
			apply(command.TypeDeviceDesiredSet, state.DeviceDesiredSet{ID: id, Model: "m", Version: 1}, start.Add(24*time.Hour).UnixMilli())
		}
		after := settle()
		b.ReportMetric(float64(after-before)/growthDevices, "B/device/desired-change")
	}
}

// uploadAndApprove registers and approves version 1 of model through the API with the admin token.
func uploadAndApprove(b *testing.B, n *Node, model string) {
	tok, err := os.ReadFile(filepath.Join(n.cfg.DataDir, AdminTokenFile))
	for i := 0; err != nil && i < 100; i++ {
		time.Sleep(50 * time.Millisecond)
		tok, err = os.ReadFile(filepath.Join(n.cfg.DataDir, AdminTokenFile))
	}
	if err != nil {
		b.Fatal(err)
	}
	auth := "Bearer " + strings.TrimSpace(string(tok))
	do := func(method, path, ct string, body io.Reader, want int) {
		req, _ := http.NewRequest(method, n.URL()+path, body)
		req.Header.Set("Authorization", auth)
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		out, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != want {
			b.Fatalf("%s %s: %d %s", method, path, res.StatusCode, out)
		}
	}
	do(http.MethodPost, "/api/v1/models", "application/json", strings.NewReader(`{"name":"`+model+`"}`), http.StatusCreated)
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	fw, _ := mw.CreateFormFile("artifact", "m.bin")
	fw.Write([]byte("weights"))
	mw.Close()
	do(http.MethodPost, "/api/v1/models/"+model+"/versions", mw.FormDataContentType(), &buf, http.StatusCreated)
	do(http.MethodPost, "/api/v1/models/"+model+"/versions/1/approve", "", nil, http.StatusOK)
}
