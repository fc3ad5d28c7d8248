package agent_test

import (
	"sync"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/driftline/driftline/agent"
	"github.com/driftline/driftline/agent/agenttest"
	"github.com/driftline/driftline/agent/config"
	"github.com/driftline/driftline/internal/freeport"
	"github.com/driftline/driftline/internal/testhelp"
	"github.com/driftline/driftline/shared/wire"
)

// collector records, in arrival order, the window index of every validation report and the ts
// of every heartbeat one device sends.
type collector struct {
	mu         sync.Mutex
	windows    []int64
	heartbeats []int64
}

func (c *collector) subscribe(t testing.TB, id string) func(s *mqtt.Server) {
	topics := wire.Default()
	return func(s *mqtt.Server) {
		err := s.Subscribe(topics.Validation(id), 1, func(_ *mqtt.Client, _ packets.Subscription, pk packets.Packet) {
			v, err := wire.DecodeValidation(pk.Payload)
			if err != nil {
				t.Errorf("bad validation report: %v", err)
				return
			}
			c.mu.Lock()
			c.windows = append(c.windows, v.Index)
			c.mu.Unlock()
		})
		if err == nil {
			err = s.Subscribe(topics.Heartbeat(id), 2, func(_ *mqtt.Client, _ packets.Subscription, pk packets.Packet) {
				hb, err := wire.DecodeHeartbeat(pk.Payload)
				if err != nil {
					t.Errorf("bad heartbeat: %v", err)
					return
				}
				c.mu.Lock()
				c.heartbeats = append(c.heartbeats, hb.TS)
				c.mu.Unlock()
			})
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// distinct returns the windows seen with at-least-once repeats removed, failing if any report
// arrived after a younger one.
func (c *collector) distinct(t testing.TB) []int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []int64
	for _, w := range c.windows {
		if len(out) > 0 && w <= out[len(out)-1] {
			if w == out[len(out)-1] {
				continue // a resend of the report whose acknowledgement was lost
			}
			t.Fatalf("window %d arrived after %d: order broken (%v)", w, out[len(out)-1], c.windows)
		}
		out = append(out, w)
	}
	return out
}

func validation(id string, index int64) []byte {
	now := time.Now().UnixMilli()
	b, err := wire.Encode(wire.Validation{Header: wire.Header{DeviceID: id, TS: now},
		Window: wire.Window{Index: index, WindowStart: now, WindowEnd: now}, ValidShare: 1})
	if err != nil {
		panic(err)
	}
	return b
}

// TestBrokerOutage stops the broker while the agent keeps reporting (what would be ~30 s of
// windows at one a second, made faster), starts it again on the same port, and checks that
// every report arrives, in order; heartbeats (not buffered: they are about now) resume in order.
func TestBrokerOutage(t *testing.T) {
	const id = "dev-out"
	var first collector
	b := startBroker(t, freeport.Port(t), first.subscribe(t, id)) // restarted on its port below
	cfg := agenttest.Config(t, id, "any", []string{b.url()}, []string{agenttest.Key(t)})
	cfg.Heartbeat = config.Duration(100 * time.Millisecond)
	a := agenttest.Start(t, cfg, agent.Options{})
	testhelp.WaitFor(t, 10*time.Second, "connected", a.Connected)

	const before, during, after = 10, 300, 10
	idx := int64(0)
	send := func(n int, pause time.Duration) {
		for i := 0; i < n; i++ {
			idx++
			if err := a.Report(wire.KindValidation, a.Topics().Validation(id), validation(id, idx)); err != nil {
				t.Fatal(err)
			}
			time.Sleep(pause)
		}
	}
	send(before, 5*time.Millisecond)
	testhelp.WaitFor(t, 10*time.Second, "reports before the outage", func() bool { return len(first.distinct(t)) == before })

	b.stop()
	testhelp.WaitFor(t, 10*time.Second, "disconnect noticed", func() bool { return !a.Connected() })
	send(during, time.Millisecond)
	if st := a.BufferStats(); st.Depth < during {
		t.Fatalf("buffer holds %d reports during the outage, want at least %d", st.Depth, during)
	}
	if n := agenttest.Metric(t, a.Reg, "driftline_agent_buffer_depth"); n < during {
		t.Fatalf("buffer depth gauge %v", n)
	}

	var second collector
	startBroker(t, b.port, second.subscribe(t, id))
	testhelp.WaitFor(t, 20*time.Second, "reconnect", a.Connected)
	send(after, 5*time.Millisecond)
	want := during + after
	testhelp.WaitFor(t, 20*time.Second, "every buffered report", func() bool { return len(second.distinct(t)) >= want })
	got := second.distinct(t)
	for i, w := range got {
		if w != int64(before+1+i) {
			t.Fatalf("report %d is window %d, want %d (lost or reordered): %v", i, w, before+1+i, got)
		}
	}
	var hbs []int64
	testhelp.WaitFor(t, 10*time.Second, "heartbeats after the outage", func() bool {
		second.mu.Lock()
		defer second.mu.Unlock()
		hbs = append([]int64(nil), second.heartbeats...)
		return len(hbs) >= 3
	})
	for i := 1; i < len(hbs); i++ {
		if hbs[i] < hbs[i-1] {
			t.Fatalf("heartbeat %d (ts %d) before %d: out of order", i, hbs[i], hbs[i-1])
		}
	}
	if d := agenttest.Metric(t, a.Reg, "driftline_agent_buffer_dropped_total", "reason", "size"); d != 0 {
		t.Fatalf("%v reports dropped within the bounds", d)
	}
	t.Logf("%d windows and %d heartbeats delivered after the outage, in order", len(got), len(hbs))
}
