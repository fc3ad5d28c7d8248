package state_test

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/driftline/driftline/hub/command"
	"github.com/driftline/driftline/hub/state"
	"github.com/driftline/driftline/hub/state/statetest"
	"github.com/driftline/driftline/shared/kv"
)

// TestHubTransactionsFit: on the hub's own state machine options (kv.State: 16 MiB memtables, so
// a transaction holds at most 2.4 MB and 26,214 writes), the largest commands apply: a rollout of
// three parts of state.DefaultPartDevices devices whose every document is just below the value
// log's 1 KiB threshold (labels, long ids: the most a write can cost inline) is planned, its
// waves started, its devices updated and rolled back.
func TestHubTransactionsFit(t *testing.T) {
	opts := kv.Options(t.TempDir(), kv.State)
	if v := os.Getenv("DRIFTLINE_TEST_MEMTABLE"); v != "" { // to find the margin by hand
		n, _ := strconv.ParseInt(v, 10, 64)
		opts = opts.WithMemTableSize(n)
	}
	s := statetest.NewOptions(t, opts)
	s.ApprovedModel(t, "m", 2)
	n := 2*state.DefaultPartDevices + 1
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("plant-%04d-line-%02d-cell-%02d-device-%08d", i%7, i%13, i%17, i)
		s.Must(t, command.TypeDeviceCreate, state.DeviceCreate{ID: ids[i], TokenHash: strings.Repeat("h", 64),
			Labels: map[string]string{"site": strings.Repeat("s", 500), "line": strings.Repeat("l", 250)}})
	}
	r := must[state.Rollout](t)(apply(s, command.TypeRolloutCreate, create("big", ids, 100, n)))
	r = transition(t, s, "big", state.ActStartWave, r)
	r = transition(t, s, "big", state.ActStartWave, r)
	var ups []state.DeviceUpdate
	for _, id := range ids {
		ups = append(ups, state.DeviceUpdate{ID: id, State: state.DevFailed, Error: strings.Repeat("e", 200)})
	}
	r = must[state.Rollout](t)(apply(s, command.TypeRolloutTransition, state.RolloutTransition{ID: "big", Action: state.ActDevices, FromState: r.State, FromWave: r.Wave, Devices: ups}))
	if r.Counts[state.DevFailed] != n {
		t.Fatalf("after the updates: counts %v", r.Counts)
	}
	r = transition(t, s, "big", state.ActRollback, r)
	if r.State != state.RolloutRolledBack {
		t.Fatalf("rolled back: %s", r.State)
	}
}

func must[T any](t *testing.T) func(any, error) T {
	return func(v any, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v.(T)
	}
}
