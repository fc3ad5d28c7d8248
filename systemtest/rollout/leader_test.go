package rollout_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/driftline/driftline/hub/node/nodetest"
	"github.com/driftline/driftline/hub/state"
	"github.com/driftline/driftline/internal/testhelp"
)

// TestLeaderKilledMidWave: a 3-node hub; 10 real agents on a follower's broker; the leader is
// stopped the way a crash stops it (raft shut down with no leadership transfer) while wave 2 of
// 3 is under way. The rollout completes under the new leader; the audit log has exactly one
// start per wave; and every device's rollout state, sampled throughout, only moved forward.
func TestLeaderKilledMidWave(t *testing.T) {
	c := nodetest.StartCluster(t, 3)
	leader := c.Leader()
	h := c.Followers()[0]
	f := newFleet(t, h) // agents connect to n2's broker, which survives
	v := pushModel(h, "m", "weights-v1", "", true)
	devs := f.startAll("d", 10, map[string]string{"site": "lab"}, agentOpts{})

	id := startRollout(h, rolloutReq{Model: "m", Version: v, Waves: map[string][]int{"counts": {3, 6, 10}}, BakeSeconds: 2,
		Gates: map[string]float64{"max_failure_rate": 0.1}, DeviceTimeout: 30})

	// Sample every device's rollout state on the surviving node until the rollout ends.
	var (
		mu       sync.Mutex
		history  = map[string][]string{}
		stop     = make(chan struct{})
		sampling = make(chan struct{})
	)
	go func() {
		defer close(sampling)
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			devsNow, err := h.Reader().RolloutDevices(id, 0)
			if err != nil {
				continue
			}
			mu.Lock()
			for _, rd := range devsNow {
				hs := history[rd.ID]
				if len(hs) == 0 || hs[len(hs)-1] != rd.State {
					history[rd.ID] = append(hs, rd.State)
				}
			}
			mu.Unlock()
		}
	}()
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		<-sampling
	}()

	var atKill state.Rollout
	testhelp.WaitFor(t, 30*time.Second, "wave 2 under way", func() bool {
		r, err := h.Reader().Rollout(id)
		atKill = r
		return err == nil && r.Wave == 2 && r.WaveDoneAt == 0
	})
	t.Logf("killing leader %s in wave %d, devices %v", leader.ID(), atKill.Wave, atKill.Counts)
	c.Kill(leader)
	killed := time.Now()
	c.WaitForNewLeader(leader)
	t.Logf("new leader after %v", time.Since(killed).Round(10*time.Millisecond))
	r := waitState(h, id, state.RolloutCompleted, 60*time.Second)
	if r.Counts[state.DevActive] != 10 {
		t.Fatalf("completed with counts %v", r.Counts)
	}
	f.waitActive(devs, "m", v, 10*time.Second)
	for _, d := range devs {
		// One desired write per device: the rollout's, made once.
		dd, err := h.Reader().Device(d.id)
		if err != nil || dd.DesiredRev != 1 || dd.Desired["m"].RolloutID != id {
			t.Errorf("%s: desired rev %d %+v (%v), want one write by rollout %s", d.id, dd.DesiredRev, dd.Desired, err, id)
		}
	}
	close(stop)
	<-sampling

	starts := map[int]int{}
	for _, e := range audit(h, id) {
		if e.Action == "rollout.start_wave" {
			var w, of int
			fmt.Sscanf(e.Detail, "wave %d of %d", &w, &of)
			starts[w]++
		}
	}
	for w := 1; w <= 3; w++ {
		if starts[w] != 1 {
			t.Errorf("wave %d started %d times (audit %v)", w, starts[w], starts)
		}
	}
	rank := map[string]int{state.DevPending: 0, state.DevNotified: 1, state.DevDownloading: 2, state.DevActivating: 3,
		state.DevActive: 4, state.DevFailed: 4, state.DevRolledBack: 5}
	mu.Lock()
	defer mu.Unlock()
	if len(history) != 10 {
		t.Errorf("sampled %d devices, want 10", len(history))
	}
	for id, hs := range history {
		for i := 1; i < len(hs); i++ {
			if rank[hs[i]] < rank[hs[i-1]] || hs[i] == state.DevFailed {
				t.Errorf("%s moved %s", id, strings.Join(hs, " -> "))
				break
			}
		}
	}
}
