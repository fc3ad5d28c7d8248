package agent

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/driftline/driftline/agent/config"
	"github.com/driftline/driftline/shared/wire"
)

// message is a paho.Message as the client hands it to route.
type message struct {
	topic   string
	payload []byte
}

func (m message) Duplicate() bool   { return false }
func (m message) Qos() byte         { return 0 }
func (m message) Retained() bool    { return false }
func (m message) Topic() string     { return m.topic }
func (m message) MessageID() uint16 { return 0 }
func (m message) Payload() []byte   { return m.payload }
func (m message) Ack()              {}

func testConn(t *testing.T, logs *bytes.Buffer) (*conn, *metrics) {
	t.Helper()
	cfg := config.Default()
	cfg.DeviceID, cfg.Token, cfg.Brokers = "d1", "token", []string{"tcp://127.0.0.1:1"}
	m, err := newMetrics(prometheus.NewRegistry(), "test", false)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	c, err := newConn(cfg, wire.Default(), m, log, time.Now(), "test", pacing{})
	if err != nil {
		t.Fatal(err)
	}
	return c, m
}

// TestLateSharedFrameQuiet: frames of a model's shared chunk topic that arrive after the pull
// left it (the broker had queued them) are dropped and counted apart, not logged as foreign
// messages (a 10,000-agent rollout logged thousands); a message on a topic the agent never
// subscribed is still refused and logged.
func TestLateSharedFrameQuiet(t *testing.T) {
	var logs bytes.Buffer
	c, m := testConn(t, &logs)
	for i := 0; i < 100; i++ {
		c.route(nil, message{topic: wire.Default().ModelChunk("bench"), payload: []byte("frame")})
	}
	if n := testutil.ToFloat64(m.rejected.WithLabelValues(ReasonLateSharedFrame)); n != 100 {
		t.Fatalf("late shared frames counted %v, want 100", n)
	}
	if logs.Len() != 0 {
		t.Fatalf("late shared frames logged: %s", logs.String())
	}
	c.route(nil, message{topic: "dl/v1/dev/other/desired", payload: []byte("{}")})
	if n := testutil.ToFloat64(m.rejected.WithLabelValues(ReasonForeignMessage)); n != 1 || !strings.Contains(logs.String(), "unexpected topic") {
		t.Fatalf("foreign message: counted %v, logged %q", n, logs.String())
	}
}

// TestPingTimeoutIsKeepAlive: the client waits a whole keep-alive for a PINGRESP, which the
// broker queues behind what it is sending the device (a wave's shared publish), instead of
// paho's 10 s, which cut healthy connections during a rollout.
func TestPingTimeoutIsKeepAlive(t *testing.T) {
	var logs bytes.Buffer
	c, _ := testConn(t, &logs)
	r := c.client.OptionsReader()
	if r.PingTimeout() < r.KeepAlive() {
		t.Fatalf("ping timeout %v, keep-alive %v: want a whole keep-alive", r.PingTimeout(), r.KeepAlive())
	}
}
