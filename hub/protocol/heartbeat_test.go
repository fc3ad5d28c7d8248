package protocol

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/driftline/driftline/hub/command"
	"github.com/driftline/driftline/hub/keys"
	"github.com/driftline/driftline/hub/state"
	"github.com/driftline/driftline/hub/state/statetest"
	"github.com/driftline/driftline/internal/testhelp"
	"github.com/driftline/driftline/shared/wire"
)

// logCounter applies commands to a test state and counts what telemetry put in the Raft log:
// the bytes of each command as the log holds it, and per device the observations that moved its
// last_seen.
type logCounter struct {
	st *statetest.Store
	mu sync.Mutex
	// bytes and entries are the Raft log bytes and entries of the DeviceTelemetry commands.
	bytes, entries int
	// lastSeen counts, per device, the observations carrying a last_seen.
	lastSeen map[string]int
}

func (c *logCounter) apply(ctx context.Context, env command.Envelope) error {
	if env.Type == command.TypeDeviceTelemetry {
		b, err := command.Encode(env)
		if err != nil {
			return err
		}
		var tel state.DeviceTelemetry
		if err := env.DecodePayload(&tel); err != nil {
			return err
		}
		c.mu.Lock()
		c.bytes += len(b)
		c.entries++
		for _, o := range tel.Devices {
			if o.LastSeen != 0 {
				c.lastSeen[o.ID]++
			}
		}
		c.mu.Unlock()
	}
	_, err := c.st.Apply(ctx, env)
	return err
}

func (c *logCounter) writes() (total, most int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range c.lastSeen {
		total, most = total+n, max(most, n)
	}
	return total, most
}

// heartbeatService starts a service whose telemetry the test flushes, on a state with n devices.
func heartbeatService(t testing.TB, n int, lastSeenInterval time.Duration) (*Service, *logCounter, []string) {
	t.Helper()
	st := statetest.New(t)
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("dev-%05d", i)
		st.Must(t, command.TypeDeviceCreate, state.DeviceCreate{ID: ids[i], TokenHash: "h"})
	}
	c := &logCounter{st: st, lastSeen: map[string]int{}}
	s, err := Start(Config{Transport: &recorder{}, DB: st.DB, Changes: st.Changes, Reader: st.Reader(), Keys: &keys.Source{R: st.Reader()},
		Apply:            c.apply,
		Interval:         time.Hour, // flushed by the test
		LastSeenInterval: lastSeenInterval,
		Logger:           slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s, c, ids
}

func heartbeat(t testing.TB, s *Service, id string) {
	t.Helper()
	b, err := wire.Encode(wire.Heartbeat{Header: wire.Header{DeviceID: id, TS: time.Now().UnixMilli()}, AgentVersion: "1.0.0",
		ActiveModels: []string{"m@1"}, RSS: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if !s.tele.observe(wire.KindHeartbeat, id, b) {
		t.Fatal("heartbeat refused")
	}
}

func status(t testing.TB, s *Service, id string, online bool) {
	t.Helper()
	b, err := wire.Encode(wire.Status{Header: wire.Header{DeviceID: id, TS: time.Now().UnixMilli()}, Online: online,
		AgentVersion: "1.0.0", Reason: wire.ReasonConnect})
	if err != nil {
		t.Fatal(err)
	}
	if !s.tele.observe(wire.KindStatus, id, b) {
		t.Fatal("status refused")
	}
}

// TestHeartbeatsStayOnTheNode: N devices heartbeating K times, each time in a batch of its own,
// within the coarse interval make at most one replicated last_seen write each, not K (issue 18:
// at 100,000 devices every heartbeat was a device write on every node, and the hub stopped
// keeping up at ~7,000 device messages a second). The node still knows when it heard each one,
// online/offline transitions are replicated at once, from this node and from another, and a
// heartbeat after the coarse interval moves the replicated last_seen again.
func TestHeartbeatsStayOnTheNode(t *testing.T) {
	const n, k = 200, 6
	s, c, ids := heartbeatService(t, n, time.Hour)
	started := time.Now().UnixMilli()
	for range k {
		for _, id := range ids {
			heartbeat(t, s, id)
		}
		s.tele.flush(context.Background())
	}
	if total, most := c.writes(); total > n || most > 1 {
		t.Fatalf("%d devices heartbeating %d times made %d replicated last_seen writes (up to %d for one device), want at most %d",
			n, k, total, most, n)
	}
	r := s.cfg.Reader
	for _, id := range ids {
		d, err := r.DeviceStatus(id)
		if err != nil {
			t.Fatal(err)
		}
		if !d.Online || d.LastSeen < started {
			t.Fatalf("%s: online %v, last_seen %d: its first heartbeat must be replicated", id, d.Online, d.LastSeen)
		}
		if h := s.LastHeard(id); h < d.LastSeen {
			t.Fatalf("%s: this node last heard it at %d, before the replicated last_seen %d", id, h, d.LastSeen)
		}
	}
	if got := testutil.ToFloat64(s.m.heartbeats.WithLabelValues(HeartbeatLocal)); got != n*(k-1) {
		t.Errorf("%s{result=local} = %v, want %d", MetricHeartbeats, got, n*(k-1))
	}

	// A clean stop (status offline) is replicated with the next batch, and so is the heartbeat
	// that brings the device back.
	status(t, s, ids[0], false)
	s.tele.flush(context.Background())
	if d, _ := r.DeviceStatus(ids[0]); d.Online {
		t.Fatal("status offline not replicated in the next batch")
	}
	heartbeat(t, s, ids[0])
	s.tele.flush(context.Background())
	if d, _ := r.DeviceStatus(ids[0]); !d.Online {
		t.Fatal("the heartbeat after an offline status did not bring the device back in the next batch")
	}

	// Another node shows a device offline (its Will went there): this node learns it from the
	// change feed, and the device's next heartbeat here is replicated at once.
	offline := false
	st := c.st
	st.Must(t, command.TypeDeviceTelemetry, state.DeviceTelemetry{Devices: []state.DeviceObservation{{ID: ids[1], Online: &offline}}})
	testhelp.WaitFor(t, 5*time.Second, "the change feed reports the other node's offline", func() bool {
		s.tele.mu.Lock()
		defer s.tele.mu.Unlock()
		p := s.tele.presence[ids[1]]
		return p != nil && p.known && !p.online
	})
	heartbeat(t, s, ids[1])
	s.tele.flush(context.Background())
	if d, _ := r.DeviceStatus(ids[1]); !d.Online {
		t.Fatal("a heartbeat of a device another node showed offline did not bring it back in the next batch")
	}
}

// TestHeartbeatRefreshesLastSeenAfterInterval: once the replicated last_seen is LastSeenInterval
// old, the next heartbeat moves it.
func TestHeartbeatRefreshesLastSeenAfterInterval(t *testing.T) {
	const interval = 100 * time.Millisecond
	s, c, ids := heartbeatService(t, 1, interval)
	id := ids[0]
	heartbeat(t, s, id)
	s.tele.flush(context.Background())
	first, err := s.cfg.Reader.DeviceStatus(id)
	if err != nil {
		t.Fatal(err)
	}
	heartbeat(t, s, id)
	s.tele.flush(context.Background())
	if total, _ := c.writes(); total != 1 {
		t.Fatalf("%d writes for two heartbeats within the interval, want 1", total)
	}
	testhelp.WaitFor(t, 5*time.Second, "the interval to pass", func() bool {
		return time.Now().UnixMilli()-first.LastSeen >= interval.Milliseconds()
	})
	heartbeat(t, s, id)
	s.tele.flush(context.Background())
	d, err := s.cfg.Reader.DeviceStatus(id)
	if err != nil {
		t.Fatal(err)
	}
	if d.LastSeen <= first.LastSeen {
		t.Fatalf("last_seen %d after a heartbeat %v later, want past %d", d.LastSeen, interval, first.LastSeen)
	}
}

// BenchmarkHeartbeatLogBytes reports the Raft log bytes and entries telemetry writes per
// heartbeat of a fleet of 1,000 devices heartbeating every 10 s (a simulated clock; each
// iteration: every device heartbeats once, then one batch): "every" replicates each heartbeat
// (the hub before issue 18's presence change, a LastSeenInterval below the heartbeat interval),
// "coarse" is the default interval (30 s).
func BenchmarkHeartbeatLogBytes(b *testing.B) {
	for _, bc := range []struct {
		name     string
		interval time.Duration
	}{{"every", time.Millisecond}, {"coarse", 0}} {
		b.Run(bc.name, func(b *testing.B) {
			const n = 1000
			s, c, ids := heartbeatService(b, n, bc.interval)
			var now atomic.Int64
			now.Store(time.Now().UnixMilli())
			s.tele.mu.Lock()
			s.tele.clock = now.Load
			s.tele.mu.Unlock()
			b.ResetTimer()
			for range b.N {
				for _, id := range ids {
					heartbeat(b, s, id)
				}
				s.tele.flush(context.Background())
				now.Add(10_000)
			}
			b.StopTimer()
			c.mu.Lock()
			defer c.mu.Unlock()
			b.ReportMetric(float64(c.bytes)/float64(b.N*n), "log-B/heartbeat")
			b.ReportMetric(float64(c.entries)/float64(b.N), "entries/batch")
		})
	}
}

// TestClaimCountsAnotherNodesCoarseSighting: after a hub restart, a replayed online `status`
// must be confirmed within the presence window. A device whose heartbeats go through another node
// moves the replicated last_seen only every LastSeenInterval, so that sighting counts until the
// window plus the interval has passed; a device with no sighting since its status is shown
// offline when the window ends.
func TestClaimCountsAnotherNodesCoarseSighting(t *testing.T) {
	st := statetest.New(t)
	const window, interval = 30 * time.Second, 30 * time.Second
	now := time.Now().UnixMilli()
	replayed := now - 3_600_000 // the replayed status's own ts, an hour ago
	online := true
	// "elsewhere" was last replicated as seen 40 s ago (another node's coarse refresh: older than
	// the window, within window + interval); "gone" was not seen since its status.
	seen := map[string]int64{"elsewhere": now - 40_000, "gone": replayed}
	for id, at := range seen {
		st.Must(t, command.TypeDeviceCreate, state.DeviceCreate{ID: id, TokenHash: "h"})
		st.Must(t, command.TypeDeviceTelemetry, state.DeviceTelemetry{Devices: []state.DeviceObservation{{ID: id, LastSeen: at, Online: &online}}})
	}
	s, err := Start(Config{Transport: &recorder{}, DB: st.DB, Changes: st.Changes, Reader: st.Reader(), Keys: &keys.Source{R: st.Reader()},
		Apply:    func(ctx context.Context, env command.Envelope) error { _, err := st.Apply(ctx, env); return err },
		Interval: time.Hour, PresenceWindow: window, LastSeenInterval: interval,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	shownOffline := func(id string) bool {
		s.tele.mu.Lock()
		defer s.tele.mu.Unlock()
		o := s.tele.pending[id]
		return o != nil && o.Online != nil && !*o.Online
	}
	s.tele.mu.Lock()
	for id := range seen {
		s.tele.unconfirmed[id] = claim{by: now, seen: replayed}
	}
	s.tele.mu.Unlock()
	s.tele.expire(now)
	if !shownOffline("gone") {
		t.Error("gone: no sighting since its replayed status, not shown offline when the window ended")
	}
	if shownOffline("elsewhere") {
		t.Fatal("elsewhere: shown offline though another node's sighting 40 s ago is within the window plus the last_seen interval")
	}
	s.tele.mu.Lock()
	c, ok := s.tele.unconfirmed["elsewhere"]
	s.tele.mu.Unlock()
	if want := seen["elsewhere"] + (window + interval).Milliseconds(); !ok || c.by != want {
		t.Fatalf("elsewhere: claim %+v (%v), want it checked again at %d", c, ok, want)
	}
	s.tele.expire(c.by) // no newer sighting reached the state meanwhile
	if !shownOffline("elsewhere") {
		t.Error("elsewhere: not shown offline once the window plus the interval passed without a newer sighting")
	}
}
