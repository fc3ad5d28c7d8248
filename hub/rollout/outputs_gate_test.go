package rollout

import (
	"testing"
	"time"

	"github.com/driftline/driftline/hub/command"
	"github.com/driftline/driftline/hub/state"
)

// outputs makes a device report prediction drift and performance on version 2.
func (f *fleet) outputs(id string, drifted bool, labels int64, relative float64) {
	o := &state.OutputHealth{Model: "m", Version: 2, At: f.clock.UnixMilli(), PredictionWindows: 1, PredictionDrift: drifted,
		Labels: labels, RelativeSum: relative * float64(labels), Relative: relative, Metric: "accuracy"}
	if drifted {
		o.PredictionDrifted = 1
	}
	f.must(command.TypeDeviceTelemetry, state.DeviceTelemetry{Devices: []state.DeviceObservation{{ID: id, Outputs: o}}})
}

// The inputs are clean on every device (no input drift, no invalid row), but the new version's
// predictions drift from its output reference: the prediction drift gate rolls it back, with
// its evidence, and the input gates pass.
func TestPredictionDriftGateRollsBackCleanInputs(t *testing.T) {
	f := newFleet(t, 4, nil)
	f.create(state.RolloutCreate{WaveSizes: []int{2, 4}, BakeSeconds: 5, OnGateFailure: "rollback",
		Gates: state.Gates{MaxDriftShare: gate(0.25), MaxInvalidRate: gate(0.01), MaxPredictionDriftShare: gate(0.25)}})
	f.pass()
	f.agentsFollow(nil, nil, 0) // clean inputs
	wave1 := waveDevices(t, f.read, 1)
	// Without prediction evidence the wave waits.
	f.clock = f.clock.Add(6 * time.Second)
	if r := f.pass(); r.Wave != 1 || r.State != state.RolloutRunning {
		t.Fatalf("advanced without prediction evidence: %+v", r)
	}
	f.outputs(wave1[0], true, 0, 0)
	f.outputs(wave1[1], false, 0, 0)
	r := f.pass()
	if r.State != state.RolloutRolledBack {
		t.Fatalf("state %s (%s), gates %+v", r.State, r.Reason, r.GateValues)
	}
	g := r.GateValues[state.GatePredictionDriftShare]
	if g.Value != 0.5 || !g.Failed || g.Evidence != 2 || r.Reason != state.GatePredictionDriftShare+" exceeded" {
		t.Fatalf("gate %+v, reason %q", g, r.Reason)
	}
	if in := r.GateValues[state.GateDriftShare]; in.Failed || in.Value != 0 || in.Evidence != 2 {
		t.Fatalf("input drift gate %+v", in)
	}
	for _, id := range wave1 {
		d, _ := f.read.Device(id)
		if d.Desired["m"].Version != 1 {
			t.Fatalf("%s still wants version %d", id, d.Desired["m"].Version)
		}
	}
}

// min_performance decides only with enough labels, then pauses a rollout whose accuracy fell
// below 90% of the reference.
func TestMinPerformanceGate(t *testing.T) {
	f := newFleet(t, 4, nil)
	f.create(state.RolloutCreate{WaveSizes: []int{2, 4}, BakeSeconds: 5,
		Gates: state.Gates{MinPerformance: gate(0.9), MinPerformanceLabels: 200}})
	f.pass()
	f.agentsFollow(nil, nil, 0)
	wave1 := waveDevices(t, f.read, 1)
	f.outputs(wave1[0], false, 50, 0.5)
	f.outputs(wave1[1], false, 50, 0.7)
	f.clock = f.clock.Add(6 * time.Second)
	r := f.pass()
	g := r.GateValues[state.GatePerformance]
	if r.State != state.RolloutRunning || r.Wave != 1 || g.Failed || g.Evidence != 100 || g.Value != 0.6 {
		t.Fatalf("decided on 100 of 200 labels: %s wave %d %+v", r.State, r.Wave, g)
	}
	f.outputs(wave1[0], false, 100, 0.8)
	f.outputs(wave1[1], false, 100, 0.95)
	r = f.pass()
	g = r.GateValues[state.GatePerformance]
	// (50*0.5 + 50*0.7 + 100*0.8 + 100*0.95) / 300 = 0.783333...
	if r.State != state.RolloutPaused || !g.Failed || g.Evidence != 300 || g.Value != round(235.0/300) {
		t.Fatalf("state %s, gate %+v", r.State, g)
	}
}
