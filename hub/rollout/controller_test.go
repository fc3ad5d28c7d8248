package rollout

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/driftline/driftline/hub/command"
	"github.com/driftline/driftline/hub/state"
	"github.com/driftline/driftline/hub/state/statetest"
	"github.com/driftline/driftline/internal/testhelp"
)

type fleet struct {
	t     testing.TB
	store *statetest.Store
	read  state.Reader
	ctl   *Controller
	clock time.Time
}

func newFleet(t testing.TB, devices int, labels func(i int) map[string]string) *fleet {
	t.Helper()
	f := &fleet{t: t, store: statetest.New(t), clock: time.UnixMilli(1_700_000_000_000)}
	f.store.Now = func() time.Time { return f.clock }
	f.read = f.store.Reader()
	f.ctl = New(Config{Store: f.store, Reader: f.read, Changes: f.store.Changes, Now: func() time.Time { return f.clock },
		Logger: testhelp.Logger(t, slog.LevelInfo)})
	f.store.ApprovedModel(t, "m", 2)
	for i := 0; i < devices; i++ {
		var l map[string]string
		if labels != nil {
			l = labels(i)
		}
		id := fmt.Sprintf("d%02d", i)
		f.must(command.TypeDeviceCreate, state.DeviceCreate{ID: id, TokenHash: "h" + id, Labels: l})
		f.must(command.TypeDeviceDesiredSet, state.DeviceDesiredSet{ID: id, Model: "m", Version: 1})
		f.report(id, 1, state.DevActive, "")
	}
	return f
}

func (f *fleet) must(t command.Type, body any) any {
	f.t.Helper()
	return f.store.Must(f.t, t, body)
}

// report makes a device say what it runs, as the MQTT telemetry batch would.
func (f *fleet) report(id string, active int, st, lastErr string) {
	a := active
	f.must(command.TypeDeviceTelemetry, state.DeviceTelemetry{Devices: []state.DeviceObservation{{
		ID: id, LastSeen: f.clock.UnixMilli(),
		Reported: &state.Reported{Models: map[string]state.ReportedModel{"m": {Active: &a, Target: 2, State: st, LastError: lastErr}}},
	}}})
}

// health makes a device report one window on version 2.
func (f *fleet) health(id string, rows, invalid int64, drift bool) {
	f.must(command.TypeDeviceTelemetry, state.DeviceTelemetry{Devices: []state.DeviceObservation{{
		ID: id, Health: &state.HealthSummary{Model: "m", Version: 2, Rows: rows, Invalid: invalid, DatasetDrift: drift, At: f.clock.UnixMilli()},
	}}})
}

func (f *fleet) create(req state.RolloutCreate) state.Rollout {
	f.t.Helper()
	var cands []Candidate
	page, _ := f.read.Devices(nil, "", state.MaxLimit)
	for _, d := range page.Items {
		cands = append(cands, Candidate{ID: d.ID, Canary: d.Labels["canary"] == "true"})
	}
	req.ID, req.Model, req.Version = "r1", "m", 2
	req.Devices = Order(req.ID, cands)
	if req.OnGateFailure == "" {
		req.OnGateFailure = "pause"
	}
	if req.DeviceTimeout == 0 {
		req.DeviceTimeout = 600
	}
	return f.must(command.TypeRolloutCreate, req).(state.Rollout)
}

func (f *fleet) pass() state.Rollout {
	f.t.Helper()
	if err := f.ctl.Pass(context.Background()); err != nil {
		f.t.Fatal(err)
	}
	r, err := f.read.Rollout("r1")
	if err != nil {
		f.t.Fatal(err)
	}
	return r
}

// agentsFollow makes every notified device of the rollout activate (or fail, for the ids in
// fail) and report a window, like healthy agents would.
func (f *fleet) agentsFollow(fail map[string]bool, drift map[string]bool, invalid int64) {
	devs, _ := f.read.RolloutDevices("r1", 0)
	for _, rd := range devs {
		if rd.State != state.DevNotified {
			continue
		}
		if fail[rd.ID] {
			f.report(rd.ID, 1, state.DevFailed, "health check failed")
			continue
		}
		f.report(rd.ID, 2, state.DevActive, "")
		f.health(rd.ID, 100, invalid, drift[rd.ID])
	}
}

func gate(v float64) *float64 { return &v }

func waveDevices(t *testing.T, r state.Reader, wave int) []string {
	devs, err := r.RolloutDevices("r1", wave)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, d := range devs {
		ids = append(ids, d.ID)
	}
	return ids
}

func TestHealthyRolloutCompletes(t *testing.T) {
	f := newFleet(t, 20, func(i int) map[string]string {
		if i == 7 {
			return map[string]string{"canary": "true"}
		}
		return nil
	})
	f.create(state.RolloutCreate{WaveSizes: []int{2, 10, 20}, BakeSeconds: 5, SetAlias: "production",
		Gates: state.Gates{MaxFailureRate: gate(0.2), MaxDriftShare: gate(0.3), MaxInvalidRate: gate(0.05)}})
	if first := waveDevices(t, f.read, 1); first[0] != "d07" {
		t.Fatalf("canary not in the first wave first: %v", first)
	}
	for step := 0; step < 50; step++ {
		r := f.pass()
		if r.State == state.RolloutCompleted {
			break
		}
		if r.State != state.RolloutRunning {
			t.Fatalf("rollout stopped: %s %s %+v", r.State, r.Reason, r.GateValues)
		}
		f.agentsFollow(nil, nil, 0)
		f.clock = f.clock.Add(2 * time.Second)
	}
	r, _ := f.read.Rollout("r1")
	if r.State != state.RolloutCompleted || r.Counts[state.DevActive] != 20 {
		t.Fatalf("rollout %s, devices %v", r.State, r.Counts)
	}
	m, _ := f.read.Model("m")
	if m.Aliases["production"] != 2 {
		t.Fatalf("alias not moved: %v", m.Aliases)
	}
	page, _ := f.read.Devices(nil, "", 100)
	for _, d := range page.Items {
		if d.Desired["m"].Version != 2 || d.Desired["m"].RolloutID != "r1" {
			t.Fatalf("device %s desired %+v", d.ID, d.Desired)
		}
	}
	audit, _ := f.read.Audit(state.AuditFilter{Actor: "rollout-controller"}, "", 1000)
	starts := 0
	for _, e := range audit.Items {
		if e.Action == "rollout."+state.ActStartWave {
			starts++
			if !strings.Contains(e.Detail, "wave ") || (starts > 1 && !strings.Contains(e.Detail, state.GateFailureRate)) {
				t.Fatalf("wave start without its gate values: %q", e.Detail)
			}
		}
	}
	if starts != 3 {
		t.Fatalf("want 3 wave starts in the audit log, got %d", starts)
	}
}

func TestFailureGatePausesAndResumeContinues(t *testing.T) {
	f := newFleet(t, 20, nil)
	f.create(state.RolloutCreate{WaveSizes: []int{5, 20}, BakeSeconds: 0, Gates: state.Gates{MaxFailureRate: gate(0.2)}})
	f.pass() // starts wave 1
	wave1 := waveDevices(t, f.read, 1)
	fail := map[string]bool{wave1[0]: true, wave1[1]: true, wave1[2]: true}
	f.agentsFollow(fail, nil, 0)
	r := f.pass()
	if r.State != state.RolloutPaused || r.GateValues[state.GateFailureRate].Value != 0.6 || !r.GateValues[state.GateFailureRate].Failed {
		t.Fatalf("want paused on failure rate 0.6, got %s %+v", r.State, r.GateValues)
	}
	for _, id := range waveDevices(t, f.read, 2) {
		if d, _ := f.read.Device(id); d.Desired["m"].Version == 2 {
			t.Fatalf("device %s of wave 2 got the new version while paused", id)
		}
	}
	// The operator fixes the devices, they activate, and a resume carries on.
	for id := range fail {
		f.report(id, 2, state.DevActive, "")
	}
	f.must(command.TypeRolloutTransition, state.RolloutTransition{ID: "r1", Action: state.ActResume, Reason: "fixed"})
	for step := 0; step < 20 && r.State != state.RolloutCompleted; step++ {
		r = f.pass()
		f.agentsFollow(nil, nil, 0)
		f.clock = f.clock.Add(time.Second)
	}
	if r.State != state.RolloutCompleted {
		t.Fatalf("after resume: %s %s", r.State, r.Reason)
	}
}

func TestDriftGateRollsBack(t *testing.T) {
	f := newFleet(t, 10, nil)
	f.create(state.RolloutCreate{WaveSizes: []int{5, 10}, BakeSeconds: 60, OnGateFailure: "rollback",
		Gates: state.Gates{MaxDriftShare: gate(0.3)}})
	f.pass()
	wave1 := waveDevices(t, f.read, 1)
	f.agentsFollow(nil, map[string]bool{wave1[0]: true, wave1[1]: true}, 0)
	r := f.pass()
	if r.State != state.RolloutRolledBack {
		t.Fatalf("want rolled_back, got %s %+v", r.State, r.GateValues)
	}
	if g := r.GateValues[state.GateDriftShare]; g.Value != 0.4 || g.Evidence != 5 {
		t.Fatalf("drift gate %+v", g)
	}
	page, _ := f.read.Devices(nil, "", 100)
	for _, d := range page.Items {
		if d.Desired["m"].Version != 1 {
			t.Fatalf("device %s not back on v1: %+v", d.ID, d.Desired)
		}
	}
	// The devices are free again: a new rollout of the model may take them.
	f.must(command.TypeRolloutCreate, state.RolloutCreate{ID: "r2", Model: "m", Version: 2, Devices: []string{"d00"}, WaveSizes: []int{1}, OnGateFailure: "pause"})
}

func TestInvalidRateGatePauses(t *testing.T) {
	f := newFleet(t, 4, nil)
	f.create(state.RolloutCreate{WaveSizes: []int{2, 4}, BakeSeconds: 60, Gates: state.Gates{MaxInvalidRate: gate(0.05)}})
	f.pass()
	f.agentsFollow(nil, nil, 20) // 20 of 100 rows break the contract
	r := f.pass()
	if r.State != state.RolloutPaused || r.GateValues[state.GateInvalidRate].Value != 0.2 {
		t.Fatalf("want paused on invalid rate 0.2, got %s %+v", r.State, r.GateValues)
	}
}

func TestEvidenceWaitAndDeviceTimeout(t *testing.T) {
	f := newFleet(t, 4, nil)
	f.create(state.RolloutCreate{WaveSizes: []int{2, 4}, BakeSeconds: 1, DeviceTimeout: 30,
		Gates: state.Gates{MaxDriftShare: gate(0.5), MaxFailureRate: gate(0.6)}})
	f.pass()
	wave1 := waveDevices(t, f.read, 1)
	f.report(wave1[0], 2, state.DevActive, "") // active, but no window yet; wave1[1] is offline
	f.clock = f.clock.Add(10 * time.Second)
	r := f.pass()
	if r.Wave != 1 || r.WaveDoneAt != 0 {
		t.Fatalf("wave settled with a silent device: %+v", r)
	}
	f.clock = f.clock.Add(31 * time.Second)
	r = f.pass()
	devs, _ := f.read.RolloutDevices("r1", 1)
	timedOut := 0
	for _, d := range devs {
		if d.State == state.DevFailed && strings.Contains(d.Error, "timed out") {
			timedOut++
		}
	}
	if timedOut != 1 || r.GateValues[state.GateFailureRate].Value != 0.5 {
		t.Fatalf("timeout not counted: %d %+v", timedOut, r.GateValues)
	}
	f.clock = f.clock.Add(5 * time.Second)
	r = f.pass()
	r = f.pass()
	if r.Wave != 1 {
		t.Fatalf("next wave started without drift evidence: wave %d", r.Wave)
	}
	f.health(wave1[0], 100, 0, false)
	f.clock = f.clock.Add(2 * time.Second)
	r = f.pass()
	if r.Wave != 2 {
		t.Fatalf("evidence arrived, bake done, yet wave %d (%s %s)", r.Wave, r.State, r.Reason)
	}
}

func TestOverlapAndUnapproved(t *testing.T) {
	f := newFleet(t, 3, nil)
	f.create(state.RolloutCreate{WaveSizes: []int{3}})
	env, _ := command.New(command.TypeRolloutCreate, "", 0, "tester", state.RolloutCreate{ID: "r2", Model: "m", Version: 1,
		Devices: []string{"d01", "d02"}, WaveSizes: []int{2}, OnGateFailure: "pause"})
	_, err := f.store.Apply(context.Background(), env)
	var ce *state.ConflictError
	if !errors.As(err, &ce) || !errors.Is(err, state.ErrConflict) || len(ce.Devices) != 2 || ce.Rollout != "r1" {
		t.Fatalf("overlap: %v", err)
	}
	f.must(command.TypeModelVersionCreate, state.ModelVersionCreate{Model: "m", Digest: "sha256:" + strings.Repeat("ab", 32), Size: 4,
		Chunks: []state.ChunkRef{{Digest: "sha256:" + strings.Repeat("ab", 32), Size: 4}}})
	env, _ = command.New(command.TypeRolloutCreate, "", 0, "tester", state.RolloutCreate{ID: "r3", Model: "m", Version: 3,
		Devices: []string{"d00"}, WaveSizes: []int{1}, OnGateFailure: "pause"})
	if _, err := f.store.Apply(context.Background(), env); !errors.Is(err, state.ErrInvalid) {
		t.Fatalf("unapproved version: %v", err)
	}
	// A replayed decision (same precondition) is refused, not applied twice.
	r := f.pass()
	env, _ = command.New(command.TypeRolloutTransition, "", 0, "rollout-controller", state.RolloutTransition{ID: "r1", Action: state.ActStartWave, FromState: state.RolloutRunning, FromWave: 0})
	if _, err := f.store.Apply(context.Background(), env); !errors.Is(err, state.ErrConflict) || r.Wave != 1 {
		t.Fatalf("replayed wave start: %v (wave %d)", err, r.Wave)
	}
}

// TestWaveWithNoActiveDevicePauses: without a failure gate, a wave whose every device failed
// still stops the rollout instead of completing it.
func TestWaveWithNoActiveDevicePauses(t *testing.T) {
	f := newFleet(t, 4, nil)
	f.create(state.RolloutCreate{WaveSizes: []int{2, 4}, BakeSeconds: 0})
	f.pass()
	fail := map[string]bool{}
	for _, id := range waveDevices(t, f.read, 1) {
		fail[id] = true
	}
	f.agentsFollow(fail, nil, 0)
	r := f.pass()
	if r.State != state.RolloutPaused || !strings.Contains(r.Reason, "every device of wave 1 failed") {
		t.Fatalf("want paused, got %s (%s)", r.State, r.Reason)
	}
}
