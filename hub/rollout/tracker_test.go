package rollout

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/driftline/driftline/hub/state"
	"github.com/driftline/driftline/hub/store"
)

// TestPassReadsOnlyChangedDevices: once a rollout's started waves were read in full, a pass
// reads only the devices the change feed named since the last one (and the devices of a wave
// it starts), decides exactly as a full read would, and a feed reset or the repair interval
// brings back one full read.
func TestPassReadsOnlyChangedDevices(t *testing.T) {
	f := newFleet(t, 40, nil)
	f.create(state.RolloutCreate{WaveSizes: []int{20, 40}, Gates: state.Gates{MaxFailureRate: gate(0.5)}})
	f.pass() // starts wave 1
	f.pass() // reads the 20 devices of wave 1 in full
	looks, builds := testutil.ToFloat64(f.ctl.looks), testutil.ToFloat64(f.ctl.builds)
	if builds != 1 || looks != 20 {
		t.Fatalf("first read: %v builds, %v looks; want 1 and 20", builds, looks)
	}
	f.pass()
	if got := testutil.ToFloat64(f.ctl.looks) - looks; got != 0 {
		t.Fatalf("a pass with no changes read %v devices", got)
	}
	// Three devices of wave 1 report; a device outside the rollout's started waves too.
	wave1 := waveDevices(t, f.read, 1)
	wave2 := waveDevices(t, f.read, 2)
	for _, id := range wave1[:3] {
		f.report(id, 2, state.DevActive, "")
	}
	f.report(wave2[0], 1, state.DevActive, "")
	looks = testutil.ToFloat64(f.ctl.looks)
	r := f.pass()
	if got := testutil.ToFloat64(f.ctl.looks) - looks; got != 3 {
		t.Fatalf("a pass after 3 reports of wave devices read %v devices", got)
	}
	if r.Counts[state.DevActive] != 3 {
		t.Fatalf("counts after 3 activations: %v", r.Counts)
	}
	// The rest of wave 1 activates: the wave settles and wave 2 starts with the totals a full
	// read gives.
	for _, id := range wave1[3:] {
		f.report(id, 2, state.DevActive, "")
	}
	for i := 0; i < 5 && r.Wave < 2; i++ {
		r = f.pass()
	}
	if r.Wave != 2 {
		t.Fatalf("wave 2 did not start: %s wave %d %v", r.State, r.Wave, r.Counts)
	}
	f.pass()
	tr := f.ctl.trackers["r1"]
	full, err := f.ctl.build(r)
	if err != nil {
		t.Fatal(err)
	}
	if tr.tot != full.tot || tr.waveUnsettled[2] != full.waveUnsettled[2] || tr.waveActive[1] != full.waveActive[1] {
		t.Fatalf("kept totals %+v (wave 2 unsettled %d) differ from a full read %+v (%d)", tr.tot, tr.waveUnsettled[2], full.tot, full.waveUnsettled[2])
	}
	// A reset (a snapshot restore) and the repair interval each bring one full read.
	builds = testutil.ToFloat64(f.ctl.builds)
	f.store.Changes.Publish([]store.Change{{Index: f.store.Index(), Reset: true}})
	f.pass()
	f.pass()
	if got := testutil.ToFloat64(f.ctl.builds) - builds; got != 1 {
		t.Fatalf("%v full reads after a reset, want 1", got)
	}
	f.clock = f.clock.Add(2 * time.Minute)
	f.pass()
	if got := testutil.ToFloat64(f.ctl.builds) - builds; got != 2 {
		t.Fatalf("%v full reads after the repair interval, want 2", got-1)
	}
}
