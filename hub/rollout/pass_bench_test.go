package rollout

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/driftline/driftline/hub/command"
	"github.com/driftline/driftline/hub/state"
	"github.com/driftline/driftline/shared/kv"
)

// BenchmarkControllerPass measures one controller pass over a running rollout whose started
// waves hold every device of an N-device fleet (one wave of 100 %), while 100 of its devices
// report between two passes (one telemetry batch, not timed, as the hub's MQTT side writes it
// every second). The pass records their progress (one devices transition) and computes the
// gates. Before the change feed a pass read every device of the started waves; with it, the
// devices the feed named.
func BenchmarkControllerPass(b *testing.B) {
	for _, n := range []int{1000, 10000, 100000} {
		b.Run(fmt.Sprintf("devices=%d", n), func(b *testing.B) { benchPass(b, n) })
	}
}

func benchPass(b *testing.B, n int) {
	// One transaction holds the rollout's create and its wave start: large memtables.
	db, err := badger.Open(kv.Options("", kv.Test).WithMemTableSize(1 << 30))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	clock := time.UnixMilli(1_700_000_000_000)
	st, ctl := benchStore(db, func() time.Time { return clock })
	st.ApprovedModel(b, "m", 2)
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("d%06d", i)
		st.Must(b, command.TypeDeviceCreate, state.DeviceCreate{ID: ids[i], TokenHash: "h" + ids[i]})
	}
	st.Must(b, command.TypeRolloutCreate, state.RolloutCreate{ID: "r1", Model: "m", Version: 2, Devices: ids,
		WaveSizes: []int{n}, OnGateFailure: "pause", Gates: state.Gates{MaxFailureRate: gate(0.5)}})
	ctx := context.Background()
	for range 2 { // start the wave; the first look at its devices
		if err := ctl.Pass(ctx); err != nil {
			b.Fatal(err)
		}
	}
	two := 2
	next := 0
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		var obs []state.DeviceObservation
		for range 100 {
			// the last device never reports, so the rollout stays running however long the run
			obs = append(obs, state.DeviceObservation{ID: ids[next%(n-1)], Reported: &state.Reported{
				Models: map[string]state.ReportedModel{"m": {Active: &two, State: state.DevActive}}}})
			next++
		}
		st.Must(b, command.TypeDeviceTelemetry, state.DeviceTelemetry{Devices: obs})
		clock = clock.Add(time.Second)
		b.StartTimer()
		if err := ctl.Pass(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if r, _ := st.Reader().Rollout("r1"); r.State != state.RolloutRunning && r.State != state.RolloutCompleted {
		b.Fatalf("rollout %s: %s", r.State, r.Reason)
	}
}
