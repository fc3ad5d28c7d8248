package rollout_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/driftline/driftline/hub/node"
	"github.com/driftline/driftline/hub/state"
)

// startCluster starts three in-process hub nodes, each with its embedded broker: n1 bootstraps
// and the others join it. It returns them with n1 (the leader) first.
func startCluster(t *testing.T) []*hub {
	t.Helper()
	first := startHub(t)
	hubs := []*hub{first}
	for i := 2; i <= 3; i++ {
		n, err := node.Start(context.Background(), node.Config{DataDir: t.TempDir(), NodeID: fmt.Sprintf("n%d", i),
			HTTPAddr: "127.0.0.1:0", RaftAddr: "127.0.0.1:0", MQTTAddr: "127.0.0.1:0", Join: first.n.URL(), JoinToken: first.tok,
			Logger: testLogger(t, slog.LevelWarn)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close() })
		hubs = append(hubs, &hub{t: t, n: n, tok: first.tok})
	}
	waitFor(t, 60*time.Second, "3 voters", func() bool {
		voters := 0
		for _, nd := range first.n.Store().Status().Nodes {
			if nd.Voter {
				voters++
			}
		}
		return voters == 3
	})
	return hubs
}

// TestLeaderKilledMidWave: a 3-node hub; 10 real agents on a follower's broker; the leader is
// stopped the way a crash stops it (raft shut down with no leadership transfer) while wave 2 of
// 3 is under way. The rollout completes under the new leader; the audit log has exactly one
// start per wave; and every device's rollout state, sampled throughout, only moved forward.
func TestLeaderKilledMidWave(t *testing.T) {
	hubs := startCluster(t)
	leader, h := hubs[0], hubs[1]
	if !leader.n.Store().IsLeader() {
		t.Fatal("n1 does not lead after bootstrap")
	}
	f := newFleet(t, h) // agents connect to n2's broker, which survives
	v := h.pushModel("m", true, "weights-v1", "", true)
	devs := f.startAll("d", 10, map[string]string{"site": "lab"}, agentOpts{})

	id := h.startRollout(rolloutReq{Model: "m", Version: v, Waves: map[string][]int{"counts": {3, 6, 10}}, BakeSeconds: 2,
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
			devsNow, err := h.n.Reader().RolloutDevices(id, 0)
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
	waitFor(t, 30*time.Second, "wave 2 under way", func() bool {
		r, err := h.n.Reader().Rollout(id)
		atKill = r
		return err == nil && r.Wave == 2 && r.WaveDoneAt == 0
	})
	if err := leader.n.Store().Abort(); err != nil {
		t.Fatalf("abort the leader: %v", err)
	}
	killed := time.Now()
	t.Logf("leader n1 killed in wave %d, devices %v", atKill.Wave, atKill.Counts)
	waitFor(t, 20*time.Second, "a new leader", func() bool {
		return hubs[1].n.Store().IsLeader() || hubs[2].n.Store().IsLeader()
	})
	t.Logf("new leader after %v", time.Since(killed).Round(10*time.Millisecond))
	r := h.waitState(id, state.RolloutCompleted, 60*time.Second)
	if r.Counts[state.DevActive] != 10 {
		t.Fatalf("completed with counts %v", r.Counts)
	}
	f.waitActive(devs, "m", v, 10*time.Second)
	for _, d := range devs {
		// One desired write per device: the rollout's, made once.
		dd, err := h.n.Reader().Device(d.id)
		if err != nil || dd.DesiredRev != 1 || dd.Desired["m"].RolloutID != id {
			t.Errorf("%s: desired rev %d %+v (%v), want one write by rollout %s", d.id, dd.DesiredRev, dd.Desired, err, id)
		}
	}
	close(stop)
	<-sampling

	starts := map[int]int{}
	for _, e := range h.audit(id) {
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
