package rollout

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/driftline/driftline/hub/command"
	"github.com/driftline/driftline/hub/state"
)

// BenchmarkController10k measures the controller's cost on a 10,000-device fleet and a 4-wave
// rollout ([1, 10, 50, 100] percent, no bake): Raft entries the controller writes per wave, and
// the decision latency from the last report of a wave (one telemetry batch, as the hub's MQTT
// side writes it) to the command that starts the next wave (which carries every desired write
// of that wave).
func BenchmarkController10k(b *testing.B) {
	const devices = 10000
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		f := newFleet(b, 0, nil)
		for d := 0; d < devices; d += 500 {
			var obs []state.DeviceObservation
			for j := d; j < d+500; j++ {
				id := fmt.Sprintf("d%05d", j)
				f.must(command.TypeDeviceCreate, state.DeviceCreate{ID: id, TokenHash: "h" + id})
				one := 1
				obs = append(obs, state.DeviceObservation{ID: id, Reported: &state.Reported{Models: map[string]state.ReportedModel{"m": {Active: &one, State: state.DevActive}}}})
			}
			f.must(command.TypeDeviceTelemetry, state.DeviceTelemetry{Devices: obs})
		}
		var cands []Candidate
		page := ""
		for {
			p, _ := f.read.Devices(nil, page, state.MaxLimit)
			for _, d := range p.Items {
				cands = append(cands, Candidate{ID: d.ID})
			}
			if p.NextCursor == nil {
				break
			}
			page = *p.NextCursor
		}
		sizes, _ := WaveSizes([]float64{1, 10, 50, 100}, false, len(cands))
		f.must(command.TypeRolloutCreate, state.RolloutCreate{ID: "r1", Model: "m", Version: 2, Devices: Order("r1", cands),
			WaveSizes: sizes, OnGateFailure: "pause", DeviceTimeout: 600, Gates: state.Gates{MaxFailureRate: gate(0.1)}})
		b.StartTimer()
		var latency time.Duration
		entries, waves := 0, 0
		for step := 0; step < 100; step++ {
			before := f.store.Index()
			t0 := time.Now()
			if err := f.ctl.Pass(context.Background()); err != nil {
				b.Fatal(err)
			}
			r, _ := f.read.Rollout("r1")
			entries += int(f.store.Index() - before)
			if r.Wave > waves {
				waves = r.Wave
				if waves > 1 {
					latency += time.Since(t0)
				}
			}
			if r.State == state.RolloutCompleted {
				break
			}
			// Every notified device reports active in one batch, as the hub's telemetry does.
			devs, _ := f.read.RolloutDevices("r1", r.Wave)
			var obs []state.DeviceObservation
			two := 2
			for _, d := range devs {
				if d.State == state.DevNotified {
					obs = append(obs, state.DeviceObservation{ID: d.ID, Reported: &state.Reported{Models: map[string]state.ReportedModel{"m": {Active: &two, State: state.DevActive}}}})
				}
			}
			if len(obs) > 0 {
				f.must(command.TypeDeviceTelemetry, state.DeviceTelemetry{Devices: obs})
			}
			f.clock = f.clock.Add(time.Second)
		}
		b.StopTimer()
		if r, _ := f.read.Rollout("r1"); r.State != state.RolloutCompleted {
			b.Fatalf("rollout %s in wave %d", r.State, r.Wave)
		}
		b.ReportMetric(float64(entries)/4, "entries/wave")
		b.ReportMetric(float64(latency.Milliseconds())/3, "decision-ms")
	}
}
