package rollout

import (
	"fmt"
	"strings"
	"testing"

	"github.com/driftline/driftline/hub/command"
	"github.com/driftline/driftline/hub/state"
)

// TestWaveTooBigToStartPauses: a wave whose start does not fit in one replicated transaction
// (here 3,000 devices with large label sets on the test database's ~4.8 MB transactions; some
// 15,000-20,000 plain devices on a hub, issue 18) pauses the rollout with a reason that says what
// to do, instead of failing the start again at every pass while the rollout seems to run.
func TestWaveTooBigToStartPauses(t *testing.T) {
	f := newFleet(t, 0, nil)
	labels := map[string]string{}
	for i := range 10 {
		labels[fmt.Sprintf("label%d", i)] = strings.Repeat("x", 200)
	}
	var cands []Candidate
	for i := range 3000 {
		id := fmt.Sprintf("big%04d", i)
		f.must(command.TypeDeviceCreate, state.DeviceCreate{ID: id, TokenHash: "h", Labels: labels})
		cands = append(cands, Candidate{ID: id})
	}
	f.must(command.TypeRolloutCreate, state.RolloutCreate{ID: "r1", Model: "m", Version: 2, Devices: Order("r1", cands),
		WaveSizes: []int{3000}, BakeSeconds: 5, OnGateFailure: "pause", DeviceTimeout: 600})
	r := f.pass()
	if r.State != state.RolloutPaused || r.Wave != 0 || !strings.Contains(r.Reason, "too big") {
		t.Fatalf("rollout %s in wave %d (%q), want paused in wave 0 saying the wave is too big", r.State, r.Wave, r.Reason)
	}
}
