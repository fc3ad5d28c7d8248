package demo

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/driftline/driftline/internal/testhelp"
)

// TestBenchFleetSmall runs the fleet benchmark (`make bench-fleet`) with 20 agents and a short
// steady state against freshly built binaries, and checks that every phase measured something:
// all online, the rollout in waves completed on every device, chunk bytes sent for every
// device, the steady states' messages, CPU and memory figures before the rollout and after it. It runs when DRIFTLINE_INTEGRATION=1.
func TestBenchFleetSmall(t *testing.T) {
	if os.Getenv("DRIFTLINE_INTEGRATION") != "1" {
		t.Skip("integration test: set DRIFTLINE_INTEGRATION=1")
	}
	const n = 20
	res, err := BenchFleet(context.Background(), BenchConfig{
		Bin: buildBinaries(t), Dir: filepath.Join(t.TempDir(), "bench"), Devices: n,
		HTTPAddr: freeAddr(t), RaftAddr: freeAddr(t), MQTTAddr: freeAddr(t),
		Timeout: 2 * time.Minute, Steady: 15 * time.Second, Settle: 5 * time.Second, Log: testhelp.LogWriter(t),
	})
	t.Logf("%s\n%s", BenchHeader, res.Row())
	if err != nil {
		t.Fatal(err)
	}
	if res.State != "completed" || res.Counts["active"] != n {
		t.Fatalf("rollout %s %v, want completed with %d active", res.State, res.Counts, n)
	}
	if res.Online <= 0 || res.Rollout <= 10*time.Second { // two bakes of 5 s at least
		t.Fatalf("online after %v, rollout %v: implausible", res.Online, res.Rollout)
	}
	// Every device got the 1 MiB model, and through the shared topic (issue 18) the hub sent it
	// about once per wave, not once per device: fewer bytes than n models.
	if res.RolloutBytes < 1<<20 || res.EgressShared+res.EgressDevice < 1<<20 {
		t.Fatalf("hub sent %d chunk bytes (egress %d shared + %d per device) for a 1 MiB model", res.RolloutBytes, res.EgressShared, res.EgressDevice)
	}
	if res.EgressShared+res.EgressDevice >= int64(n)<<20 {
		t.Fatalf("chunk egress %d shared + %d per device: the model went out once per device (%d), not per wave", res.EgressShared, res.EgressDevice, n)
	}
	if res.IdleRSS <= 0 || res.FleetPeakRSS <= 0 {
		t.Fatalf("memory not measured: %+v", res)
	}
	// Both steady states, before the rollout (every agent online, no model) and after it, carry
	// every figure: heartbeats alone are n per 10 s.
	for _, s := range []struct {
		name string
		f    SteadyFigures
	}{{"before", res.Before}, {"after", res.After}} {
		f := s.f
		if f.Window < 15*time.Second || f.Settle != 5*time.Second || f.MessagesPerSec < float64(n)/10/2 || f.Cores <= 0 ||
			f.RSS <= 0 || f.Anon <= 0 || f.RSS <= res.IdleRSS || f.PerDevice <= 0 || f.Heap <= 0 || f.Stacks <= 0 || f.Goroutines <= 0 {
			t.Fatalf("steady state %s the rollout not measured: %+v", s.name, f)
		}
	}
	if row := res.Row(); !strings.HasPrefix(row, "| 20 |") {
		t.Fatalf("row %q", row)
	}
	rows := res.SteadyRows()
	if len(rows) != 2 || !strings.HasPrefix(rows[0], "| 20 | before the rollout |") || !strings.HasPrefix(rows[1], "| 20 | after the rollout |") {
		t.Fatalf("steady rows %q", rows)
	}
	t.Logf("%s\n%s", SteadyHeader, strings.Join(rows, "\n"))
}
