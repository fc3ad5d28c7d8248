package state_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"

	"github.com/dgraph-io/badger/v4"

	"github.com/driftline/driftline/hub/command"
	"github.com/driftline/driftline/hub/state"
	"github.com/driftline/driftline/hub/state/statetest"
	"github.com/driftline/driftline/hub/store"
)

// bigRollout is a state whose badger transactions hold ~1,900 writes (1 MiB memtables), with
// bigDevices devices: a rollout of them is several transactions' worth of writes, as 100,000
// devices are on the hub (issue 18).
const bigDevices = 2000

func bigState(t *testing.T) *statetest.Store {
	t.Helper()
	s := statetest.NewSmall(t, 1<<20)
	s.Proc.PartDevices = 100
	s.ApprovedModel(t, "m", 2)
	for i := range bigDevices {
		s.Must(t, command.TypeDeviceCreate, state.DeviceCreate{ID: fmt.Sprintf("d%05d", i), TokenHash: "h"})
	}
	return s
}

func bigIDs(from, to int) []string {
	var ids []string
	for i := from; i < to; i++ {
		ids = append(ids, fmt.Sprintf("d%05d", i))
	}
	return ids
}

func apply(s *statetest.Store, typ command.Type, body any) (any, error) {
	env, err := command.New(typ, "", 0, "tester", body)
	if err != nil {
		return nil, err
	}
	return s.Apply(context.Background(), env)
}

func create(id string, devices []string, waves ...int) state.RolloutCreate {
	return state.RolloutCreate{ID: id, Model: "m", Version: 2, Devices: devices, WaveSizes: waves, OnGateFailure: "pause", DeviceTimeout: 600}
}

func keysUnder(t *testing.T, s *statetest.Store, prefix string) int {
	t.Helper()
	n := 0
	err := s.DB.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(prefix)})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			n++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func transition(t *testing.T, s *statetest.Store, id, action string, from state.Rollout) state.Rollout {
	t.Helper()
	res, err := apply(s, command.TypeRolloutTransition, state.RolloutTransition{ID: id, Action: action, FromState: from.State, FromWave: from.Wave, Reason: action})
	if err != nil {
		t.Fatalf("%s: %v", action, err)
	}
	return res.(state.Rollout)
}

// TestRolloutBiggerThanATransaction: a rollout whose plan, wave start, device updates and
// rollback each write more than one badger transaction holds is applied in bounded parts:
// created whole, each wave started whole, rolled back whole, its devices released.
func TestRolloutBiggerThanATransaction(t *testing.T) {
	s := bigState(t)
	// Unsplit, the plan does not fit one transaction: what capped a rollout before.
	s.Proc.PartDevices = 1 << 30
	if _, err := apply(s, command.TypeRolloutCreate, create("r0", bigIDs(0, bigDevices), bigDevices)); !errors.Is(err, store.ErrCommandTooBig) {
		t.Fatalf("unsplit plan of %d devices: %v, want ErrCommandTooBig (the test's transactions are too big)", bigDevices, err)
	}
	s.Proc.PartDevices = 100
	res, err := apply(s, command.TypeRolloutCreate, create("r1", bigIDs(0, bigDevices), 150, bigDevices))
	if err != nil {
		t.Fatal(err)
	}
	r := res.(state.Rollout)
	if r.Total != bigDevices || r.Counts[state.DevPending] != bigDevices || keysUnder(t, s, "fsm/rp/") != 0 {
		t.Fatalf("created %+v", r)
	}
	devs, err := s.Reader().RolloutDevices("r1", 0)
	if err != nil || len(devs) != bigDevices || devs[bigDevices-1].Order != bigDevices-1 || devs[bigDevices-1].Wave != 2 {
		t.Fatalf("%d devices, err %v", len(devs), err)
	}
	r = transition(t, s, "r1", state.ActStartWave, r)
	s.Proc.PartDevices = 1 << 30 // unsplit, wave 2's start does not fit either, and changes nothing
	if _, err := apply(s, command.TypeRolloutTransition, state.RolloutTransition{ID: "r1", Action: state.ActStartWave, FromState: r.State, FromWave: r.Wave}); !errors.Is(err, store.ErrCommandTooBig) {
		t.Fatalf("unsplit start of wave 2: %v, want ErrCommandTooBig", err)
	}
	s.Proc.PartDevices = 100
	r = transition(t, s, "r1", state.ActStartWave, r)
	if r.Wave != 2 || r.Counts[state.DevNotified] != bigDevices {
		t.Fatalf("after two wave starts: wave %d, counts %v", r.Wave, r.Counts)
	}
	wave2, err := s.Reader().RolloutDevices("r1", 2)
	if err != nil || len(wave2) != bigDevices-150 {
		t.Fatalf("wave 2: %d devices, err %v", len(wave2), err)
	}
	d, err := s.Reader().Device("d01999")
	if err != nil || d.Desired["m"].Version != 2 || d.Desired["m"].RolloutID != "r1" {
		t.Fatalf("last device's desired %+v, err %v", d.Desired, err)
	}
	var ups []state.DeviceUpdate
	for _, id := range bigIDs(0, bigDevices) {
		ups = append(ups, state.DeviceUpdate{ID: id, State: state.DevActive})
	}
	res, err = apply(s, command.TypeRolloutTransition, state.RolloutTransition{ID: "r1", Action: state.ActDevices, FromState: r.State, FromWave: r.Wave, Devices: ups})
	if err != nil || res.(state.Rollout).Counts[state.DevActive] != bigDevices {
		t.Fatalf("device updates: %v, %+v", err, res)
	}
	r = transition(t, s, "r1", state.ActRollback, res.(state.Rollout))
	if r.State != state.RolloutRolledBack || r.Counts[state.DevRolledBack] != bigDevices {
		t.Fatalf("rolled back: %s, counts %v", r.State, r.Counts)
	}
	if d, _ := s.Reader().Device("d01999"); len(d.Desired) != 0 {
		t.Fatalf("last device still desires %+v after the rollback", d.Desired)
	}
	if n := keysUnder(t, s, "fsm/rx/m/"); n != 0 {
		t.Fatalf("%d claims left after the rollback", n)
	}
	// Released: a second rollout of every device is planned, started and aborted; a third is
	// completed, and its claims go too.
	for _, end := range []struct{ id, action, state string }{
		{"r2", state.ActAbort, state.RolloutAborted},
		{"r3", state.ActComplete, state.RolloutCompleted},
	} {
		res, err = apply(s, command.TypeRolloutCreate, create(end.id, bigIDs(0, bigDevices), bigDevices))
		if err != nil {
			t.Fatal(err)
		}
		r = transition(t, s, end.id, state.ActStartWave, res.(state.Rollout))
		r = transition(t, s, end.id, end.action, r)
		if r.State != end.state || keysUnder(t, s, "fsm/rx/m/") != 0 {
			t.Fatalf("%s: %s, %d claims left", end.action, r.State, keysUnder(t, s, "fsm/rx/m/"))
		}
	}
}

// TestRefusedPlanLeavesNothing: a plan whose later part is refused (a device claimed by another
// active rollout, after earlier parts were written) answers the conflict and leaves nothing of
// itself: no rollout, no hidden plan, no device places, claims or order entries.
func TestRefusedPlanLeavesNothing(t *testing.T) {
	s := bigState(t)
	if _, err := apply(s, command.TypeRolloutCreate, create("held", bigIDs(1900, 1910), 10)); err != nil {
		t.Fatal(err)
	}
	_, err := apply(s, command.TypeRolloutCreate, create("big", bigIDs(0, bigDevices), bigDevices))
	var ce *state.ConflictError
	if !errors.As(err, &ce) || ce.Rollout != "held" || len(ce.Devices) != 10 {
		t.Fatalf("plan over a held device: %v, want the conflict with rollout held", err)
	}
	if _, err := s.Reader().Rollout("big"); !errors.Is(err, state.ErrNotFound) {
		t.Fatalf("refused rollout readable: %v", err)
	}
	for _, p := range []string{"fsm/rp/", "fsm/rd/big/", "fsm/rn/big/"} {
		if n := keysUnder(t, s, p); n != 0 {
			t.Errorf("%d keys left under %s", n, p)
		}
	}
	if n := keysUnder(t, s, "fsm/rx/m/"); n != 10 {
		t.Errorf("%d claims, want the 10 of rollout held", n)
	}
	// The first part refused (a device that does not exist): nothing written either.
	if _, err := apply(s, command.TypeRolloutCreate, create("big", append([]string{"nope"}, bigIDs(0, 1500)...), 1501)); !errors.Is(err, state.ErrNotFound) {
		t.Fatalf("plan with an unknown first device: %v", err)
	}
	if n := keysUnder(t, s, "fsm/rd/big/") + keysUnder(t, s, "fsm/rp/") + keysUnder(t, s, "fsm/rx/m/"); n != 10 {
		t.Errorf("%d keys after the refused first part, want the 10 claims of rollout held", n)
	}
	// The same plan without the held devices goes through.
	if _, err := apply(s, command.TypeRolloutCreate, create("big", bigIDs(0, 1900), 1900)); err != nil {
		t.Fatal(err)
	}
}

// TestRetriedRolloutCreateIsIdempotent: a split create retried with its request id (the client
// timed out) answers the rollout it created, not a conflict.
func TestRetriedRolloutCreateIsIdempotent(t *testing.T) {
	s := bigState(t)
	env, err := command.New(command.TypeRolloutCreate, "req-1", 0, "tester", create("r1", bigIDs(0, 1500), 1500))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		res, err := s.Apply(context.Background(), env)
		if err != nil {
			t.Fatalf("attempt %d: %v", i+1, err)
		}
		// The retry answers the result the first attempt stored (JSON).
		var r state.Rollout
		if raw, ok := res.(json.RawMessage); ok {
			if err := json.Unmarshal(raw, &r); err != nil {
				t.Fatalf("attempt %d: %v", i+1, err)
			}
		} else {
			r, _ = res.(state.Rollout)
		}
		if r.ID != "r1" {
			t.Fatalf("attempt %d: %+v", i+1, r)
		}
	}
}
