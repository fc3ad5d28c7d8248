package state

import (
	"fmt"
	"testing"

	"github.com/dgraph-io/badger/v4"

	"github.com/driftline/driftline/hub/command"
)

// TestRolloutWithoutOrderIndex: a rollout planned before the order index (rn/ keys; data of an
// older hub) still starts its waves in parts, rolls back and releases its devices, by reading
// its device places.
func TestRolloutWithoutOrderIndex(t *testing.T) {
	h := newHarness(t)
	seedRegistry(h)
	h.must(command.TypeModelVersionApprove, "bob", ModelVersionApprove{Model: "m", Version: 1, Signature: Signature{KeyID: "k", Sig: "s"}})
	var ids []string
	for i := range 6 {
		ids = append(ids, fmt.Sprintf("d%d", i))
		h.must(command.TypeDeviceCreate, "alice", DeviceCreate{ID: ids[i], TokenHash: "h"})
	}
	h.must(command.TypeRolloutCreate, "alice", RolloutCreate{ID: "old", Model: "m", Version: 1, Devices: ids, WaveSizes: []int{2, 6},
		OnGateFailure: "pause", DeviceTimeout: 600})
	err := h.db.Update(func(txn *badger.Txn) error {
		for i := range ids {
			if err := txn.Delete(rolloutOrderKey("old", i)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	h.must(command.TypeRolloutTransition, "ctl", RolloutTransition{ID: "old", Action: ActStartWave})
	// Wave 2 (orders 2-5) in two parts, as Split cuts it.
	h.must(command.TypeRolloutTransitionPart, "ctl", RolloutTransition{ID: "old", Action: ActStartWave, Part: &Part{From: 2, To: 4, Wave: 2, First: true}})
	r := h.must(command.TypeRolloutTransitionPart, "ctl", RolloutTransition{ID: "old", Action: ActStartWave, Part: &Part{From: 4, To: 6, Wave: 2, Last: true}}).(Rollout)
	if r.Wave != 2 || r.Counts[DevNotified] != 6 {
		t.Fatalf("wave %d, counts %v: want wave 2 with all 6 told", r.Wave, r.Counts)
	}
	devs, err := Reader{DB: h.db}.RolloutDevices("old", 2)
	if err != nil || len(devs) != 4 || devs[0].Order != 2 {
		t.Fatalf("wave 2's devices %+v, %v", devs, err)
	}
	r = h.must(command.TypeRolloutTransition, "ctl", RolloutTransition{ID: "old", Action: ActRollback, Reason: "test"}).(Rollout)
	if r.Counts[DevRolledBack] != 6 {
		t.Fatalf("rolled back: counts %v", r.Counts)
	}
	h.must(command.TypeRolloutCreate, "alice", RolloutCreate{ID: "new", Model: "m", Version: 1, Devices: ids, WaveSizes: []int{6},
		OnGateFailure: "pause", DeviceTimeout: 600}) // released: no conflict
}
