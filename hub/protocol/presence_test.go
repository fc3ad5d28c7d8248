package protocol

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/driftline/driftline/hub/broker"
	"github.com/driftline/driftline/hub/command"
	"github.com/driftline/driftline/hub/keys"
	"github.com/driftline/driftline/hub/state"
	"github.com/driftline/driftline/hub/state/statetest"
	"github.com/driftline/driftline/internal/testhelp"
	"github.com/driftline/driftline/shared/wire"
)

type noClients struct{}

func (noClients) Authenticate(string, []byte) (broker.Principal, error) {
	return broker.Principal{}, errors.New("no clients in this test")
}

// TestRetainedReplayIsNotPresence restarts the hub's view of a fleet the way a hub crash leaves
// it: the replicated state says three devices are online, and the embedded broker's retained
// store (badger) still holds each one's `status` online (no Will went out: the broker died too)
// and `reported`. The protocol service then subscribes, and the broker replays them.
//
//   - "gone" connected weeks ago and is dead: its last_seen must stay its own messages' time,
//     not move to the restart (SPEC: last_seen), and with no heartbeat within the presence
//     window it must be shown offline;
//   - "fresh" connected just before the crash and never came back: offline after the window;
//   - "live" connected weeks ago and still heartbeats: it stays online, last seen now;
//   - "elsewhere" connected weeks ago and its live messages go through another hub node (their
//     batches reach the replicated state, not this node): it stays online too;
//   - "expired" was already shown offline before this restart (an earlier expiry), though its
//     retained status says online: the replay must not show it online, not even for a window.
func TestRetainedReplayIsNotPresence(t *testing.T) {
	st := statetest.New(t)
	now := time.Now()
	weeksAgo := now.Add(-21 * 24 * time.Hour).UnixMilli()
	ids := []string{"gone", "fresh", "live", "elsewhere", "expired"}
	connected := map[string]int64{"gone": weeksAgo, "fresh": now.Add(-100 * time.Millisecond).UnixMilli(), "live": weeksAgo,
		"elsewhere": weeksAgo, "expired": weeksAgo}
	var before []state.DeviceObservation
	for _, id := range ids {
		st.Must(t, command.TypeDeviceCreate, state.DeviceCreate{ID: id, TokenHash: "h-" + id})
		was := id != "expired"
		before = append(before, state.DeviceObservation{ID: id, LastSeen: connected[id], Online: &was})
	}
	st.Must(t, command.TypeDeviceTelemetry, state.DeviceTelemetry{Devices: before})
	setTrust(t, st)

	b, err := broker.New(broker.Config{Addr: "127.0.0.1:0", DB: st.DB, Auth: noClients{}, Logger: testhelp.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	topics := wire.Default()
	publish := func(topic string, m wire.Payload, retain bool) {
		t.Helper()
		p, err := wire.Encode(m)
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Publish(topic, p, retain, 1); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range ids {
		h := wire.Header{DeviceID: id, TS: connected[id]}
		publish(topics.Status(id), wire.Status{Header: h, Online: true, AgentVersion: "0.9.0", Reason: wire.ReasonConnect}, true)
		publish(topics.Reported(id), wire.Reported{Header: h, Rev: 1, Models: map[string]wire.ReportedModel{}}, true)
	}

	const window = time.Second
	s, err := Start(Config{Transport: b, DB: st.DB, Changes: st.Changes, Reader: st.Reader(), Keys: &keys.Source{R: st.Reader()},
		Apply:          func(ctx context.Context, env command.Envelope) error { _, err := st.Apply(ctx, env); return err },
		Interval:       100 * time.Millisecond,
		PresenceWindow: window,
		Logger:         testhelp.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)

	// "slowbeat" connects after the hub started and heartbeats less often than the window (an
	// agent configured with a long heartbeat): its live status needs no confirmation, the Will or
	// a clean stop ends it.
	st.Must(t, command.TypeDeviceCreate, state.DeviceCreate{ID: "slowbeat", TokenHash: "h-slowbeat"})
	slowAt := time.Now()
	publish(topics.Status("slowbeat"), wire.Status{Header: wire.Header{DeviceID: "slowbeat", TS: slowAt.UnixMilli()},
		Online: true, AgentVersion: "0.9.0", Reason: wire.ReasonConnect}, true)

	// "live" heartbeats (live, never retained) until the test ends; "elsewhere" sends window
	// reports through another node, whose telemetry batches this node sees only in the state.
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(window / 5)
		defer tick.Stop()
		for {
			p, _ := wire.Encode(wire.Heartbeat{Header: wire.Header{DeviceID: "live", TS: time.Now().UnixMilli()}, AgentVersion: "0.9.0"})
			_ = b.Publish(topics.Heartbeat("live"), p, false, 0)
			env, err := command.New(command.TypeDeviceTelemetry, "", 0, "n2", state.DeviceTelemetry{Devices: []state.DeviceObservation{
				{ID: "elsewhere", LastSeen: time.Now().UnixMilli()}}})
			if err == nil {
				_, err = st.Apply(ctx, env)
			}
			if err != nil {
				t.Error(err)
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(func() { cancel(); wg.Wait() })

	dev := func(id string) state.Device {
		t.Helper()
		d, err := st.Reader().DeviceStatus(id)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	started := now.UnixMilli()
	testhelp.WaitFor(t, 10*time.Second, "live's heartbeats and reported state applied", func() bool {
		d := dev("live")
		return d.LastSeen >= started && d.Reported.Rev == 1
	})
	testhelp.WaitFor(t, 10*time.Second, "the replayed reported states applied", func() bool {
		return dev("gone").Reported.Rev == 1 && dev("fresh").Reported.Rev == 1 && dev("expired").Reported.Rev == 1
	})
	if dev("expired").Online {
		t.Errorf("expired: online after the replay of a weeks-old retained status")
	}
	for _, id := range []string{"gone", "fresh", "expired"} {
		if d := dev(id); d.LastSeen != connected[id] {
			t.Errorf("%s: last_seen %s after the replay of its retained messages, want its own %s (the restart is not a sighting)",
				id, time.UnixMilli(d.LastSeen).UTC(), time.UnixMilli(connected[id]).UTC())
		}
	}
	testhelp.WaitFor(t, 5*window, "gone and fresh shown offline: no heartbeat within the presence window", func() bool {
		return !dev("gone").Online && !dev("fresh").Online
	})
	for _, id := range []string{"live", "elsewhere"} {
		if d := dev(id); !d.Online || d.LastSeen < started {
			t.Fatalf("%s: online %v, last seen %s: its live messages say it is here", id, d.Online, time.UnixMilli(d.LastSeen).UTC())
		}
	}
	// A heartbeat brings a device marked offline back at once.
	publish(topics.Heartbeat("gone"), wire.Heartbeat{Header: wire.Header{DeviceID: "gone", TS: time.Now().UnixMilli()}, AgentVersion: "0.9.0"}, false)
	testhelp.WaitFor(t, 10*time.Second, "gone back online after its heartbeat", func() bool {
		d := dev("gone")
		return d.Online && d.LastSeen >= started
	})
	testhelp.WaitFor(t, 10*time.Second, "slowbeat's live status applied", func() bool { return dev("slowbeat").Online })
	for time.Since(slowAt) < 3*window { // the absence of an expiry can only be seen by letting windows pass
		time.Sleep(window / 10)
	}
	if !dev("slowbeat").Online {
		t.Errorf("slowbeat: shown offline %s after a live connect without a heartbeat in the window; its Will ends it, not the window", time.Since(slowAt))
	}
}
