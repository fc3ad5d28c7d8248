package rollout_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/driftline/driftline/hub/node/nodetest"
	"github.com/driftline/driftline/hub/state"
	"github.com/driftline/driftline/internal/testhelp"
)

// TestHealthyRolloutRealAgents: 20 real agents, waves [10, 50, 100] percent. The rollout
// completes, every device runs the new version (hub state and the agent's model dir), the
// alias moves, and the audit log shows each wave's start once, with its gate values.
func TestHealthyRolloutRealAgents(t *testing.T) {
	h := nodetest.Start(t)
	f := newFleet(t, h)
	v := pushModel(h, "m", "weights-v1", "", true)
	devs := f.startAll("d", 20, map[string]string{"site": "lab"}, agentOpts{})

	id := startRollout(h, rolloutReq{Model: "m", Version: v, Selector: "site=lab", Waves: []float64{10, 50, 100},
		BakeSeconds: 1, Gates: map[string]float64{"max_failure_rate": 0.1}, DeviceTimeout: 20, SetAlias: "prod"})
	r := waitState(h, id, state.RolloutCompleted, 60*time.Second)
	if r.Wave != 3 || r.Counts[state.DevActive] != 20 || len(r.WaveSizes) != 3 || r.WaveSizes[0] != 2 || r.WaveSizes[1] != 10 {
		t.Fatalf("completed rollout: wave %d sizes %v counts %v", r.Wave, r.WaveSizes, r.Counts)
	}
	f.waitActive(devs, "m", v, 10*time.Second)
	for _, rd := range rolloutDevices(h, id) {
		if rd.State != state.DevActive {
			t.Errorf("device %s is %s in the rollout", rd.ID, rd.State)
		}
	}
	var alias struct {
		Version int `json:"version"`
	}
	h.Call(http.MethodGet, "/api/v1/models/m/aliases/prod", nil, http.StatusOK, &alias)
	if alias.Version != v {
		t.Errorf("alias prod -> %d, want %d", alias.Version, v)
	}

	starts := 0
	for _, e := range audit(h, id) {
		t.Logf("audit %s %s", e.Action, e.Detail)
		if e.Action != "rollout.start_wave" {
			continue
		}
		starts++
		if !strings.Contains(e.Detail, fmt.Sprintf("wave %d of 3", starts)) {
			t.Errorf("start %d: %q", starts, e.Detail)
		}
		if starts > 1 && !strings.Contains(e.Detail, state.GateFailureRate) {
			t.Errorf("wave %d started without its gate values: %q", starts, e.Detail)
		}
	}
	if starts != 3 {
		t.Errorf("%d wave starts in the audit log, want 3", starts)
	}
}

// TestHealthCheckFailurePausesThenFixedDevicesContinue: 3 of the 5 canaries fail their health
// check (max_failure_rate 0.2, waves {"counts": [5, 20]}): the rollout pauses in wave 1 and the
// other 15 devices never get the version. The operator fixes the 3 devices (their health-check
// script passes again), re-assigns the version to them (PUT /devices/{id}/models/m: a new
// desired revision, which the agent acts on; a failed health check is final for a revision) and
// resumes: the controller counts the fixed devices active and the rollout completes.
func TestHealthCheckFailurePausesThenFixedDevicesContinue(t *testing.T) {
	h := nodetest.Start(t)
	f := newFleet(t, h)
	v := pushModel(h, "m", "weights-v1", "", true)
	ok, bad := true, false
	var canaries, broken, rest []*device
	for i := range 5 {
		d := f.enroll(fmt.Sprintf("c-%02d", i), map[string]string{"site": "lab", "canary": "true"})
		if i < 3 {
			f.start(d, agentOpts{healthOK: &bad})
			broken = append(broken, d)
		} else {
			f.start(d, agentOpts{healthOK: &ok})
		}
		canaries = append(canaries, d)
	}
	for i := range 15 {
		d := f.enroll(fmt.Sprintf("d-%02d", i), map[string]string{"site": "lab"})
		f.start(d, agentOpts{healthOK: &ok})
		rest = append(rest, d)
	}
	f.waitConnected(append(append([]*device{}, canaries...), rest...))

	id := startRollout(h, rolloutReq{Model: "m", Version: v, Waves: map[string][]int{"counts": {5, 20}},
		BakeSeconds: 1, Gates: map[string]float64{"max_failure_rate": 0.2}, DeviceTimeout: 20})
	r := waitState(h, id, state.RolloutPaused, 30*time.Second)
	if r.Wave != 1 || !strings.Contains(r.Reason, state.GateFailureRate) {
		t.Fatalf("paused in wave %d: %q", r.Wave, r.Reason)
	}
	testhelp.WaitFor(t, 20*time.Second, "the broken canaries to report failed", func() bool {
		for _, d := range broken {
			d2, err := h.Reader().Device(d.id)
			if err != nil || d2.Reported.Models["m"].State != state.DevFailed {
				return false
			}
		}
		return true
	})
	for _, d := range broken {
		if c := d.current(t, "m"); c != 0 {
			t.Errorf("%s: failed health check left current at %d", d.id, c)
		}
	}
	for _, d := range rest {
		if dd, _ := h.Reader().Device(d.id); dd.Desired["m"].Version != 0 || d.current(t, "m") != 0 {
			t.Errorf("%s of wave 2 got the version while paused in wave 1", d.id)
		}
	}

	for _, d := range broken {
		f.setHealth(d, true)
		h.Call(http.MethodPut, "/api/v1/devices/"+d.id+"/models/m", map[string]int{"version": v}, http.StatusOK, nil)
	}
	f.waitActive(broken, "m", v, 20*time.Second)
	h.Call(http.MethodPost, "/api/v1/rollouts/"+id+"/resume", nil, http.StatusOK, nil)
	r = waitState(h, id, state.RolloutCompleted, 60*time.Second)
	if r.Counts[state.DevActive] != 20 {
		t.Fatalf("completed with counts %v", r.Counts)
	}
	f.waitActive(append(canaries, rest...), "m", v, 10*time.Second)
}
