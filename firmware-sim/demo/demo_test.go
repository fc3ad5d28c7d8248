package demo

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/driftline/driftline/firmware-sim/sim"
	"github.com/driftline/driftline/internal/freeport"
	"github.com/driftline/driftline/internal/testhelp"
)

func freeAddr(t *testing.T) string {
	return freeport.Addr(t)
}

// buildBinaries builds the demo's three binaries into a temporary directory.
func buildBinaries(t *testing.T) string {
	t.Helper()
	bin := t.TempDir()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	for _, cmd := range []string{"hub/cmd/driftline", "agent/cmd/driftline-agent", "firmware-sim/cmd/firmware-sim"} {
		b := exec.Command("go", "build", "-o", filepath.Join(bin, filepath.Base(cmd)), "./"+cmd)
		b.Dir = root
		if out, err := b.CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", cmd, err, out)
		}
	}
	return bin
}

// runDemo runs the demo for 90 s on free ports with the shift at 15 s and checks the summary up
// to the v2 rollout; it returns the summary.
func runDemo(t *testing.T, fleet bool) Summary {
	cfg := Config{
		Bin: buildBinaries(t), DataDir: filepath.Join(t.TempDir(), "demo"),
		HTTPAddr: freeAddr(t), RaftAddr: freeAddr(t), MQTTAddr: freeAddr(t),
		Seconds: 90, ShiftAfter: 15 * time.Second, Out: testhelp.LogWriter(t), Fleet: fleet,
	}
	sum, err := Run(context.Background(), cfg)
	sum.Print(testhelp.LogWriter(t))
	if err != nil {
		t.Fatal(err)
	}
	if sum.Devices != 5 || sum.DevicesOnline != 5 {
		t.Fatalf("%d of %d devices online, want 5 of 5", sum.DevicesOnline, sum.Devices)
	}
	if len(sum.Rollouts) != 2 || sum.Rollouts[0].Version != 1 || sum.Rollouts[0].State != "completed" {
		t.Fatalf("rollouts %+v: want v1 completed, then v2", sum.Rollouts)
	}
	if sum.Rollouts[0].Devices["active"]+sum.Rollouts[0].Devices["rolled_back"] != 5 {
		t.Fatalf("v1 rollout devices %v", sum.Rollouts[0].Devices)
	}
	return sum
}

// checkGate checks that the drift gate stopped v2 and every device runs v1 again (or still, when
// the rollout only paused).
func checkGate(t *testing.T, sum Summary) {
	t.Helper()
	v2 := sum.Rollouts[1]
	if v2.State != "rolled_back" && v2.State != "paused" {
		t.Fatalf("v2 rollout %s (%s), want rolled_back or paused by the drift gate", v2.State, v2.Reason)
	}
	if g, ok := v2.Gates["max_drift_share"]; !ok || !g.Failed {
		t.Fatalf("v2 gates %+v: want max_drift_share failed", v2.Gates)
	}
	if v2.State == "rolled_back" && sum.Versions["v1"] != 5 {
		t.Fatalf("versions %v: after the rollback every device runs v1", sum.Versions)
	}
	for _, id := range sum.Shifted {
		if !slices.Contains(sum.DriftSeen, id) {
			t.Fatalf("shifted device %s never reported drift (seen: %v)", id, sum.DriftSeen)
		}
	}
	// The loop: the shifted devices' samples became a candidate dataset, and the demo's webhook
	// receiver got its event.
	if len(sum.Candidates) == 0 || !slices.Contains(sum.Webhooks, "io.driftline.dataset.candidate "+sum.Candidates[0]) {
		t.Fatalf("candidates %v, webhook events %v: want a candidate and its event", sum.Candidates, sum.Webhooks)
	}
}

// TestDemo runs the demo as `make demo` does (five driftline-agent processes and firmware-sim
// run) for 90 s against freshly built binaries, and checks its summary: every device online, v1
// rolled out, and the v2 rollout stopped by its drift gate with every device back on v1. It
// runs when DRIFTLINE_INTEGRATION=1 or without -short.
func TestDemo(t *testing.T) {
	if testing.Short() && os.Getenv("DRIFTLINE_INTEGRATION") != "1" {
		t.Skip("integration test: set DRIFTLINE_INTEGRATION=1 or drop -short")
	}
	checkGate(t, runDemo(t, false))
}

// TestDemoFleet runs the demo with the agents in one firmware-sim fleet process (DEMO_FLEET=1).
// It runs when DRIFTLINE_INTEGRATION=1.
func TestDemoFleet(t *testing.T) {
	if os.Getenv("DRIFTLINE_INTEGRATION") != "1" {
		t.Skip("integration test: set DRIFTLINE_INTEGRATION=1")
	}
	checkGate(t, runDemo(t, true))
}

// TestSummaryPrint checks the machine-readable last line.
func TestSummaryPrint(t *testing.T) {
	var b strings.Builder
	Summary{Devices: 2, DevicesOnline: 1, Versions: map[string]int{"v1": 2},
		Rollouts: []RolloutSummary{{ID: "abcdef123456", Version: 1, State: "paused", Reason: "gate",
			Gates: map[string]gate{"max_drift_share": {Value: 0.4, Threshold: 0.2, Failed: true, Evidence: 5}}}}}.Print(&b)
	out := b.String()
	for _, want := range []string{"devices online: 1 of 2", "v1 on 2", "rollout abcdef12: v1 paused (gate)", "max_drift_share 0.40 (threshold 0.20, evidence 5) FAILED", "\nSUMMARY {\"devices\":2,"} {
		if !strings.Contains(out, want) {
			t.Fatalf("summary %q lacks %q", out, want)
		}
	}
}

// TestScenarioAndSample checks the generated assets parse and agree.
func TestScenarioAndSample(t *testing.T) {
	s, err := sim.Parse([]byte(scenarioYAML(5, time.Minute, []string{"edge-2", "edge-4"})), ".")
	if err != nil {
		t.Fatal(err)
	}
	if s.Rate != 5 || len(s.Events) != 3 || s.Events[0].At.D() != time.Minute || s.Events[0].Devices[1] != "edge-4" {
		t.Fatalf("scenario %+v", s)
	}
	dir := t.TempDir()
	p := filepath.Join(dir, "sample.csv")
	if err := writeSample(p, 100); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 101 || lines[0] != "device_id,ts,temperature,humidity,vibration,mode" {
		t.Fatalf("sample: %d lines, header %q", len(lines), lines[0])
	}
	v1, v2, err := writeArtifacts(dir, 1<<16)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(v1)
	c, _ := os.ReadFile(v2)
	diff := 0
	for i := range a {
		if a[i] != c[i] {
			diff++
		}
	}
	if diff == 0 || diff > len(a)/15 {
		t.Fatalf("v2 differs from v1 in %d of %d bytes", diff, len(a))
	}
}
