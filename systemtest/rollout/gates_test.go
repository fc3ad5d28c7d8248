package rollout_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/driftline/driftline/hub/node/nodetest"
	"github.com/driftline/driftline/hub/state"
)

// dataSetup starts a hub with dataset "sensors" (contract and a reference sample) and two
// approved versions of model m trained on it, and n agents (window of 50 rows) running m@1.
func dataSetup(t *testing.T, n int) (*nodetest.Hub, *fleet, []*device, int, int) {
	t.Helper()
	h := nodetest.Start(t)
	f := newFleet(t, h)
	h.PushDataset("sensors", sensorContract, sensorCSV(600))
	v1 := pushModel(h, "m", "weights-v1", "sensors", true)
	v2 := pushModel(h, "m", "weights-v2", "sensors", true)
	devs := f.startAll("d", n, map[string]string{"site": "lab"}, agentOpts{windowRows: 50})
	for _, d := range devs {
		h.Call(http.MethodPut, "/api/v1/devices/"+d.id+"/models/m", map[string]int{"version": v1}, http.StatusOK, nil)
	}
	f.waitActive(devs, "m", v1, 30*time.Second)
	return h, f, devs, v1, v2
}

// TestDriftGateRollsBackRealAgents: the devices on the new version see readings whose means
// moved far from the training data's; their agents report drifted windows against the
// reference profile of the dataset v2 was trained on, the drift gate fails, and with
// on_gate_failure rollback every device ends on v1 again (model dir current = 1).
func TestDriftGateRollsBackRealAgents(t *testing.T) {
	h, f, devs, v1, v2 := dataSetup(t, 4)
	f.feed(devs, "m", v2, shiftedRow, 50)
	id := startRollout(h, rolloutReq{Model: "m", Version: v2, Waves: map[string][]int{"counts": {2, 4}}, BakeSeconds: 1,
		Gates: map[string]float64{"max_drift_share": 0.3}, OnGateFailure: "rollback", DeviceTimeout: 20})
	r := waitState(h, id, state.RolloutRolledBack, 45*time.Second)
	g := r.GateValues[state.GateDriftShare]
	if !g.Failed || g.Value <= 0.3 || r.Wave != 1 || !strings.Contains(r.Reason, state.GateDriftShare) {
		t.Fatalf("rolled back in wave %d for %q with drift gate %+v", r.Wave, r.Reason, g)
	}
	f.waitActive(devs, "m", v1, 30*time.Second)
	told := 0
	for _, rd := range rolloutDevices(h, id) {
		if rd.State == state.DevRolledBack {
			told++
		} else if rd.State != state.DevPending {
			t.Errorf("%s is %s after the rollback", rd.ID, rd.State)
		}
	}
	if told != 2 {
		t.Errorf("%d devices rolled back, want the 2 of wave 1", told)
	}
}

// TestInvalidRateGatePausesRealAgents: half the rows the new version's devices see break its
// contract (temperature above the maximum); their agents' validation reports fail the
// max_invalid_rate gate and the rollout pauses in wave 1.
func TestInvalidRateGatePausesRealAgents(t *testing.T) {
	h, f, devs, _, v2 := dataSetup(t, 4)
	f.feed(devs, "m", v2, invalidRow, 50)
	id := startRollout(h, rolloutReq{Model: "m", Version: v2, Waves: map[string][]int{"counts": {2, 4}}, BakeSeconds: 1,
		Gates: map[string]float64{"max_invalid_rate": 0.1}, DeviceTimeout: 20})
	r := waitState(h, id, state.RolloutPaused, 45*time.Second)
	g := r.GateValues[state.GateInvalidRate]
	if !g.Failed || g.Value < 0.4 || g.Value > 0.6 || r.Wave != 1 {
		t.Fatalf("paused in wave %d for %q with invalid gate %+v", r.Wave, r.Reason, g)
	}
	waves := 0
	for _, rd := range rolloutDevices(h, id) {
		if rd.State != state.DevPending {
			waves++
		}
	}
	if waves != 2 {
		t.Errorf("%d devices told, want the 2 of wave 1", waves)
	}
}

// TestOverlapUnapprovedAndOfflineDevice: a second rollout that selects devices of a running
// one is refused with 409 naming the overlapping ids; an unapproved version is refused with
// 400; a device that is enrolled but whose agent never starts times out after
// device_timeout_seconds and counts as failed, while the others complete.
func TestOverlapUnapprovedAndOfflineDevice(t *testing.T) {
	h := nodetest.Start(t)
	f := newFleet(t, h)
	v1 := pushModel(h, "m", "weights-v1", "", true)
	online := []*device{f.enroll("a-0", map[string]string{"site": "lab", "row": "1"}), f.enroll("a-1", map[string]string{"site": "lab", "row": "2"})}
	f.enroll("a-2", map[string]string{"site": "lab", "row": "2"}) // offline: never started
	for _, d := range online {
		f.start(d, agentOpts{})
	}
	f.waitConnected(online)

	id := startRollout(h, rolloutReq{Model: "m", Version: v1, Selector: "site=lab", Waves: []float64{100}, BakeSeconds: 1,
		Gates: map[string]float64{"max_failure_rate": 0.5}, DeviceTimeout: 2})
	h.Call(http.MethodPost, "/api/v1/rollouts/"+id+"/pause", nil, http.StatusOK, nil) // hold it active while we probe
	var problem struct {
		Extra struct {
			Rollout string   `json:"rollout"`
			Devices []string `json:"devices"`
		} `json:"extra"`
	}
	h.Call(http.MethodPost, "/api/v1/rollouts", rolloutReq{Model: "m", Version: v1, Selector: "row=2", Waves: []float64{100}}, http.StatusConflict, &problem)
	conflict := problem.Extra
	slices.Sort(conflict.Devices)
	if conflict.Rollout != id || !slices.Equal(conflict.Devices, []string{"a-1", "a-2"}) {
		t.Errorf("409 names rollout %q devices %v, want %s [a-1 a-2]", conflict.Rollout, conflict.Devices, id)
	}
	v2 := pushModel(h, "m", "weights-v2", "", false)
	body := h.Call(http.MethodPost, "/api/v1/rollouts", rolloutReq{Model: "m", Version: v2, Selector: "row=9", Waves: []float64{100}}, http.StatusBadRequest, nil)
	if !strings.Contains(string(body), "approved") {
		t.Errorf("unapproved version refused with %s", body)
	}

	h.Call(http.MethodPost, "/api/v1/rollouts/"+id+"/resume", nil, http.StatusOK, nil)
	r := waitState(h, id, state.RolloutCompleted, 30*time.Second)
	if r.Counts[state.DevActive] != 2 || r.Counts[state.DevFailed] != 1 {
		t.Fatalf("completed with counts %v", r.Counts)
	}
	if g := r.GateValues[state.GateFailureRate]; g.Evidence != 3 || g.Value < 0.33 || g.Value > 0.34 {
		t.Errorf("failure gate %+v, want 1/3 over 3 devices", g)
	}
	rd := rolloutDevices(h, id)["a-2"]
	if rd.State != state.DevFailed || !strings.Contains(rd.Error, "timed out") {
		t.Errorf("offline device: %+v", rd)
	}
	f.waitActive(online, "m", v1, 10*time.Second)
}
