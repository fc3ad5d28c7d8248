package agenttest_test

import (
	"testing"

	"github.com/driftline/driftline/agent/agenttest"
	"github.com/driftline/driftline/agent/outbox"
)

// TestCheckHeld: what a stopped agent's outbox holds against the hub's report cursor.
func TestCheckHeld(t *testing.T) {
	held := func(epoch uint64, nums ...uint64) outbox.Held {
		return outbox.Held{Epoch: epoch, Numbers: nums, AwaitHub: true}
	}
	hub := func(epoch, through uint64, pending int) agenttest.HubReports {
		return agenttest.HubReports{Epoch: epoch, Through: through, Pending: pending}
	}
	for _, tc := range []struct {
		name  string
		held  outbox.Held
		hub   agenttest.HubReports
		ended bool
		fail  bool
	}{
		{"held after what the hub has", held(7, 4, 5), hub(7, 3, 0), false, false},
		{"held, some already at the hub", held(7, 2, 3, 4), hub(7, 3, 1), false, false},
		{"forgotten before the hub had it", held(7, 5, 6), hub(7, 3, 0), false, true},
		{"a hole in what is held", held(7, 4, 6), hub(7, 3, 0), false, true},
		{"new epoch from 1, hub still at the old", held(8, 1, 2), hub(7, 30, 0), false, false},
		{"new epoch, its start forgotten", held(8, 3), hub(7, 30, 0), false, true},
		{"nothing held, hub has all", held(7), hub(7, 9, 0), true, false},
		{"nothing held, hub waits behind a hole", held(7), hub(7, 9, 2), true, true},
		{"hub ahead of the agent's epoch", held(7, 1), hub(8, 1, 0), false, true},
		{"not waiting for the hub", outbox.Held{Epoch: 7}, hub(7, 1, 0), false, true},
	} {
		ended, err := agenttest.CheckHeld(tc.held, tc.hub)
		if (err != nil) != tc.fail || (err == nil && ended != tc.ended) {
			t.Errorf("%s: ended %v, err %v; want ended %v, failing %v", tc.name, ended, err, tc.ended, tc.fail)
		}
	}
}
