package protocol

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/driftline/driftline/hub/command"
	"github.com/driftline/driftline/hub/keys"
	"github.com/driftline/driftline/hub/state"
	"github.com/driftline/driftline/hub/state/statetest"
	"github.com/driftline/driftline/hub/store"
	"github.com/driftline/driftline/internal/testhelp"
	"github.com/driftline/driftline/shared/wire"
)

// TestPublishersFollowTheChangeFeed runs the service on a state store's change feed (no API
// callback, no database watch): its start publishes every desired state; a desired write is
// published at its new revision; telemetry (a status change) wakes nothing; a removed device's
// retained message is cleared; a rollout's fleet message follows its transitions.
func TestPublishersFollowTheChangeFeed(t *testing.T) {
	st := statetest.New(t)
	st.ApprovedModel(t, "m", 2)
	for i := range 5 {
		id := fmt.Sprintf("d%d", i)
		st.Must(t, command.TypeDeviceCreate, state.DeviceCreate{ID: id, TokenHash: "h-" + id})
		st.Must(t, command.TypeDeviceDesiredSet, state.DeviceDesiredSet{ID: id, Model: "m", Version: 1})
	}
	setTrust(t, st)

	tr := &recorder{}
	s, err := Start(Config{Transport: tr, DB: st.DB, Changes: st.Changes, Reader: st.Reader(), Keys: &keys.Source{R: st.Reader()},
		Apply:  func(ctx context.Context, env command.Envelope) error { _, err := st.Apply(ctx, env); return err },
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	topics := wire.Default()
	rev := func(id string) uint64 {
		b := tr.last(topics.Desired(id))
		if b == nil {
			return 0
		}
		d, err := wire.DecodeDesired(b)
		if err != nil {
			t.Fatal(err)
		}
		return d.Rev
	}
	testhelp.WaitFor(t, 10*time.Second, "the first pass to publish every device", func() bool {
		for i := range 5 {
			if rev(fmt.Sprintf("d%d", i)) != 1 {
				return false
			}
		}
		return true
	})

	// Telemetry for every device, then one desired write: once the write is published (the feed
	// is in commit order, so the telemetry was handled before it), exactly one device was read.
	before := s.desired.looked.Load()
	var obs []state.DeviceObservation
	for i := range 5 {
		obs = append(obs, state.DeviceObservation{ID: fmt.Sprintf("d%d", i), LastSeen: time.Now().UnixMilli(),
			Reported: &state.Reported{Rev: 1, Models: map[string]state.ReportedModel{}}})
	}
	st.Must(t, command.TypeDeviceTelemetry, state.DeviceTelemetry{Devices: obs})
	st.Must(t, command.TypeDeviceDesiredSet, state.DeviceDesiredSet{ID: "d3", Model: "m", Version: 2})
	testhelp.WaitFor(t, 10*time.Second, "d3's new desired state", func() bool { return rev("d3") == 2 })
	if n := s.desired.looked.Load() - before; n != 1 {
		t.Fatalf("the desired publisher read %d devices for one desired change after a telemetry batch of 5, want 1", n)
	}

	// A removed device's retained desired message is cleared.
	st.Must(t, command.TypeDeviceDelete, state.DeviceDelete{ID: "d4"})
	testhelp.WaitFor(t, 10*time.Second, "d4's desired message cleared", func() bool {
		b, ok := tr.payloadOf(topics.Desired("d4"))
		return ok && len(b) == 0
	})

	// A snapshot restore that drops a device (no change describes it: the feed resets) clears
	// its retained message too. The restore is simulated by deleting the device's keys.
	if err := st.DB.Update(func(txn *badger.Txn) error {
		for _, k := range []string{"fsm/dev/d2", "fsm/devst/d2"} {
			if err := txn.Delete([]byte(k)); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	st.Changes.Publish([]store.Change{{Index: st.Index(), Reset: true}})
	testhelp.WaitFor(t, 10*time.Second, "d2's desired message cleared after the reset", func() bool {
		b, ok := tr.payloadOf(topics.Desired("d2"))
		return ok && len(b) == 0
	})

	// A rollout's fleet message follows it.
	st.Must(t, command.TypeRolloutCreate, state.RolloutCreate{ID: "r1", Model: "m", Version: 2, Devices: []string{"d0", "d1"},
		WaveSizes: []int{2}, OnGateFailure: "pause"})
	testhelp.WaitFor(t, 10*time.Second, "the rollout's fleet message", func() bool { return tr.last(topics.FleetRollout("r1")) != nil })
	st.Must(t, command.TypeRolloutTransition, state.RolloutTransition{ID: "r1", Action: state.ActStartWave})
	testhelp.WaitFor(t, 10*time.Second, "the fleet message of wave 1", func() bool {
		var m wire.FleetRollout
		return json.Unmarshal(tr.last(topics.FleetRollout("r1")), &m) == nil && m.Wave == 1
	})
	testhelp.WaitFor(t, 10*time.Second, "wave 1's desired states", func() bool { return rev("d0") == 2 && rev("d1") == 2 })
}

// payloadOf returns the last payload published to topic and whether any was.
func (r *recorder) payloadOf(topic string) ([]byte, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	b, ok := r.payloads[topic]
	return b, ok
}
