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
	"github.com/driftline/driftline/internal/testhelp"
)

// bigWave creates n devices with 10 labels of labelLen bytes each and rollout r1 of them in one
// wave, and returns the devices.
func bigWave(f *fleet, n, labelLen int) []Candidate {
	labels := map[string]string{}
	for i := range 10 {
		labels[fmt.Sprintf("label%d", i)] = strings.Repeat("x", labelLen)
	}
	var cands []Candidate
	for i := range n {
		id := fmt.Sprintf("big%04d", i)
		f.must(command.TypeDeviceCreate, state.DeviceCreate{ID: id, TokenHash: "h", Labels: labels})
		cands = append(cands, Candidate{ID: id})
	}
	f.must(command.TypeRolloutCreate, state.RolloutCreate{ID: "r1", Model: "m", Version: 2, Devices: Order("r1", cands),
		WaveSizes: []int{n}, BakeSeconds: 5, OnGateFailure: "pause", DeviceTimeout: 600})
	return cands
}

// TestWaveTooBigToStartPauses: a wave start is proposed in parts of state.DefaultPartDevices
// devices (issue 18), so waves of any size start; a part that still does not fit in one
// replicated transaction (here 1,000 devices with ~6 KB of labels each on the test database's
// ~4.8 MB transactions) pauses the rollout with a reason that says so, instead of failing the
// start again at every pass while the rollout seems to run. Nothing of the wave started.
func TestWaveTooBigToStartPauses(t *testing.T) {
	f := newFleet(t, 0, nil)
	bigWave(f, 1500, 600)
	r := f.pass()
	if r.State != state.RolloutPaused || r.Wave != 0 || !strings.Contains(r.Reason, "too big") || r.Counts[state.DevPending] != 1500 {
		t.Fatalf("rollout %s in wave %d (%q), counts %v; want paused in wave 0 saying a part is too big", r.State, r.Wave, r.Reason, r.Counts)
	}
}

// TestBigWaveStarts: a wave of 3,000 devices with ~2 KB of labels each (~7 MB of desired states,
// more than the test database's ~4.8 MB transaction: refused whole before issue 18's parts)
// starts, every device is told, and the rollout completes.
func TestBigWaveStarts(t *testing.T) {
	f := newFleet(t, 0, nil)
	cands := bigWave(f, 3000, 200)
	r := f.pass()
	if r.State != state.RolloutRunning || r.Wave != 1 || r.Counts[state.DevNotified] != 3000 {
		t.Fatalf("rollout %s in wave %d (%q), counts %v; want wave 1 started with 3,000 devices told", r.State, r.Wave, r.Reason, r.Counts)
	}
	for _, c := range cands {
		f.report(c.ID, 2, state.DevActive, "")
	}
	r = f.pass()
	f.clock = f.clock.Add(6 * time.Second)
	r = f.pass()
	if r.State != state.RolloutCompleted || r.Counts[state.DevActive] != 3000 {
		t.Fatalf("rollout %s (%q), counts %v; want completed with 3,000 active", r.State, r.Reason, r.Counts)
	}
}

// TestBigWaveDuringUpgradePauses: while a hub node runs a build that does not know the parts
// (a rolling upgrade: the store proposes the wave start whole, store.ErrNotSplit), a wave too big
// for one transaction pauses the rollout with a reason that says to finish the upgrade; once
// every node knows the parts, a resume starts the wave in parts.
func TestBigWaveDuringUpgradePauses(t *testing.T) {
	f := newFleet(t, 0, nil)
	f.store.Unsplit = errors.New("node hub3 runs an older build")
	bigWave(f, 3000, 200)
	r := f.pass()
	if r.State != state.RolloutPaused || r.Wave != 0 || !strings.Contains(r.Reason, "finish the upgrade") || r.Counts[state.DevPending] != 3000 {
		t.Fatalf("rollout %s in wave %d (%q), counts %v; want paused in wave 0 saying to finish the upgrade", r.State, r.Wave, r.Reason, r.Counts)
	}
	f.store.Unsplit = nil // every node upgraded
	f.must(command.TypeRolloutTransition, state.RolloutTransition{ID: "r1", Action: state.ActResume, Reason: "upgrade done"})
	r = f.pass()
	if r.State != state.RolloutRunning || r.Wave != 1 || r.Counts[state.DevNotified] != 3000 {
		t.Fatalf("rollout %s in wave %d (%q), counts %v; want wave 1 started in parts after the upgrade", r.State, r.Wave, r.Reason, r.Counts)
	}
}

// slowApply is a store whose applies take d, as a wave start of 90,000 devices keeps the FSM
// busy for ~20 s (docs/benchmarks.md, run d).
type slowApply struct {
	Store
	d time.Duration
}

func (s slowApply) Apply(ctx context.Context, env command.Envelope) (any, error) {
	time.Sleep(s.d) // the FSM's work, simulated
	return s.Store.Apply(ctx, env)
}

// TestBackoffLeavesOutApplyWait: the wait before the next pass is passBackoff times the pass's
// own work, not the time its proposals waited for the store: counted whole, a 20 s wave start put
// the next pass (and the recording of the wave's progress) 80 s later.
func TestBackoffLeavesOutApplyWait(t *testing.T) {
	f := newFleet(t, 3, nil)
	f.create(state.RolloutCreate{WaveSizes: []int{3}, BakeSeconds: 5})
	const apply = 400 * time.Millisecond
	c := New(Config{Store: slowApply{Store: f.store, d: apply}, Reader: f.read, Changes: f.store.Changes,
		Now: func() time.Time { return f.clock }, Interval: 10 * time.Millisecond, Logger: testhelp.Logger(t, slog.LevelInfo)})
	start := time.Now()
	c.applyWait.Store(0)
	if err := c.Pass(context.Background()); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	if r, _ := f.read.Rollout("r1"); r.Wave != 1 || took < apply {
		t.Fatalf("pass took %s, rollout in wave %d: want the wave started through the slow store", took, r.Wave)
	}
	if wait := c.backoff(took); wait >= passBackoff*apply {
		t.Fatalf("next pass in %s after a pass of %s of which %s waited for the store: want less than %s", wait, took, apply, passBackoff*apply)
	}
}
