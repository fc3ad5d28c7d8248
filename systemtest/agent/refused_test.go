package agent_test

import (
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/driftline/driftline/agent"
	"github.com/driftline/driftline/agent/agenttest"
	"github.com/driftline/driftline/hub/node/nodetest"
	"github.com/driftline/driftline/internal/hubproc"
	"github.com/driftline/driftline/internal/testhelp"
)

// connProxy forwards TCP connections to a broker and records when each was opened: what the
// broker sees of an agent's connect attempts.
type connProxy struct {
	ln    net.Listener
	mu    sync.Mutex
	at    []time.Time
	conns []net.Conn
}

func newConnProxy(t *testing.T, brokerURL string) *connProxy {
	t.Helper()
	u, err := url.Parse(brokerURL)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &connProxy{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			p.at = append(p.at, time.Now())
			up, err := net.Dial("tcp", u.Host)
			if err != nil {
				p.mu.Unlock()
				c.Close()
				continue
			}
			p.conns = append(p.conns, c, up)
			p.mu.Unlock()
			go func() { io.Copy(up, c); up.Close() }()
			go func() { io.Copy(c, up); c.Close() }()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
	})
	return p
}

func (p *connProxy) url() string { return "tcp://" + p.ln.Addr().String() }

// attempts returns the times connections were opened.
func (p *connProxy) attempts() []time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]time.Time(nil), p.at...)
}

// refusedAgent runs an agent whose broker refuses its token, with a refused backoff starting
// at base, and returns it with its log.
func refusedAgent(t *testing.T, id, broker string, keys []string, base time.Duration) (*agenttest.Agent, *hubproc.Output) {
	t.Helper()
	logs := &hubproc.Output{}
	logger := slog.New(slog.NewTextHandler(io.MultiWriter(logs, testhelp.LogWriter(t)), &slog.HandlerOptions{Level: slog.LevelInfo}))
	cfg := agenttest.Config(t, id, "dl_dev_not-the-token", []string{broker}, keys)
	cfg.Metrics = "127.0.0.1:0"
	a := agenttest.Start(t, cfg, agent.Options{Logger: logger, RefusedBackoff: base, RefusedBackoffMax: 60 * base})
	return a, logs
}

// TestRefusedTokenBacksOff runs an agent with a wrong token against the real embedded hub
// broker: the refusal is logged once as an error naming the cause and the broker, counted by
// reason in /metrics, shown in GET /status, and retried with growing (jittered, never shorter
// than half the step) waits instead of about once a second forever.
func TestRefusedTokenBacksOff(t *testing.T) {
	const id = "dev-revoked"
	h := nodetest.Start(t)
	enroll(h, id) // the device exists; the agent holds a token that is not its own
	p := newConnProxy(t, h.MQTTURL())
	const base = 200 * time.Millisecond
	a, logs := refusedAgent(t, id, p.url(), h.Keys(), base)

	testhelp.WaitFor(t, 30*time.Second, "six refused attempts", func() bool {
		return credentialRefusals(t, a) >= 6
	})
	at := p.attempts()
	if len(at) < 6 {
		t.Fatalf("%d connections seen by the broker for 6 refusals", len(at))
	}
	// The wait before attempt k+1 is jittered into [step/2, step], step = base·2^(k-1): paho's
	// own retry (1 s, or its 5 s cap) breaks these lower bounds, and timers never fire early.
	for k := 1; k < 6; k++ {
		gap := at[k].Sub(at[k-1])
		if floor := base << (k - 1) / 2; gap < floor {
			t.Errorf("attempt %d came %v after the previous one, want at least %v (attempts at %v)", k+1, gap, floor, at[:6])
		}
	}
	if a.Connected() {
		t.Fatal("connected with a wrong token")
	}
	out := logs.String()
	if n := strings.Count(out, "level=ERROR msg=\"broker refused the connection\""); n != 1 {
		t.Fatalf("%d error lines for the refusal, want 1:\n%s", n, out)
	}
	// mochi answers a 3.1.1 client's bad password with 5, not authorised (V5CodesToV3).
	for _, want := range []string{"reason=" + agent.RefusedNotAuthorized, "broker=" + p.url(), "code=5"} {
		if !strings.Contains(out, want) {
			t.Errorf("the refusal's log line does not say %q:\n%s", want, out)
		}
	}

	testhelp.WaitFor(t, 10*time.Second, "the status listener", func() bool { return a.MetricsAddr() != "" })
	res, err := http.Get("http://" + a.MetricsAddr() + "/status")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var st agent.Status
	if err := json.NewDecoder(res.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	c := st.Connection
	if st.DeviceID != id || c.Connected || c.Refused != agent.RefusedNotAuthorized || c.RefusedCode != 5 || c.Broker != p.url() ||
		c.FailedAttempts < 6 || c.NextAttempt.IsZero() || c.Since.IsZero() {
		t.Fatalf("status %+v", st)
	}
}

// TestRefusedThenNewToken: after refusals, SetToken with the device's real token connects at
// once (without waiting out the backoff), and the status clears.
func TestRefusedThenNewToken(t *testing.T) {
	const id = "dev-reissued"
	h := nodetest.Start(t)
	tok := enroll(h, id)
	a, logs := refusedAgent(t, id, h.MQTTURL(), h.Keys(), time.Minute)
	testhelp.WaitFor(t, 20*time.Second, "a refusal", func() bool {
		return credentialRefusals(t, a) >= 1
	})
	if c := a.Connection(); c.NextAttempt.Before(time.Now().Add(20 * time.Second)) {
		t.Fatalf("next attempt %v: the refused backoff (≥ 30 s) is not in force", c.NextAttempt)
	}
	a.SetToken(tok)
	testhelp.WaitFor(t, 10*time.Second, "connected with the new token", a.Connected)
	if c := a.Connection(); c.Refused != "" || !c.Connected || c.FailedAttempts != 0 {
		t.Fatalf("status after the new token %+v", c)
	}
	if !strings.Contains(logs.String(), "broker accepted the connection after refusing it") {
		t.Fatalf("no line saying the refusal ended:\n%s", logs.String())
	}
	if v := agenttest.Metric(t, a.Reg, agent.MetricConnectBackoff); v != 0 {
		t.Fatalf("backoff gauge %v while connected", v)
	}
}

// TestRefusedByMosquitto: Mosquitto refuses a device missing from its password file (3.1.1
// return code 5, not authorised); the agent logs it once and counts it.
func TestRefusedByMosquitto(t *testing.T) {
	m := startMosquitto(t)
	a, logs := refusedAgent(t, "dev-unknown", m.url(), []string{agenttest.Key(t)}, 100*time.Millisecond)
	testhelp.WaitFor(t, 20*time.Second, "three refusals", func() bool {
		return credentialRefusals(t, a) >= 3
	})
	if n := strings.Count(logs.String(), "level=ERROR msg=\"broker refused the connection\""); n != 1 {
		t.Fatalf("%d error lines for the refusal, want 1:\n%s", n, logs.String())
	}
}

// credentialRefusals sums the agent's refusals for bad credentials and not authorised (brokers
// answer a wrong password with either).
func credentialRefusals(t *testing.T, a *agenttest.Agent) float64 {
	return agenttest.Metric(t, a.Reg, agent.MetricConnectRefused, "reason", agent.RefusedNotAuthorized) +
		agenttest.Metric(t, a.Reg, agent.MetricConnectRefused, "reason", agent.RefusedBadCredentials)
}

// TestOutboxQuietWhileDown: while the connection is down, refused or unreachable, the outbox
// waits for it instead of trying each queued report and logging every failure ("publish
// failed, will retry ... not connected" about every 2 s, forever): the outage is told once, by
// the connection, and the queued reports are still sent once it comes up.
func TestOutboxQuietWhileDown(t *testing.T) {
	t.Run("refused", func(t *testing.T) {
		const id = "dev-quiet"
		h := nodetest.Start(t)
		enroll(h, id)
		a, logs := refusedAgent(t, id, h.MQTTURL(), h.Keys(), 100*time.Millisecond)
		// Refusals at about 0.1, 0.3, 0.7, 1.5, 3.1 s: the outbox (retries from 100 ms up to 2 s)
		// tried about eight times meanwhile.
		testhelp.WaitFor(t, 30*time.Second, "five refusals", func() bool { return credentialRefusals(t, a) >= 5 })
		if a.BufferStats().Depth == 0 {
			t.Fatal("nothing queued: the test proves nothing")
		}
		out := logs.String()
		if n := strings.Count(out, "publish failed"); n != 0 {
			t.Fatalf("%d publish failures logged while refused, want 0:\n%s", n, out)
		}
		if n := strings.Count(out, "level=ERROR msg=\"broker refused the connection\""); n != 1 {
			t.Fatalf("%d lines for the refusal, want 1:\n%s", n, out)
		}
	})
	t.Run("unreachable", func(t *testing.T) {
		h := nodetest.Start(t)
		tok := enroll(h, "dev-away")
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		dead := "tcp://" + ln.Addr().String()
		ln.Close() // nothing listens there: every attempt is a network error
		logs := &hubproc.Output{}
		logger := slog.New(slog.NewTextHandler(io.MultiWriter(logs, testhelp.LogWriter(t)), &slog.HandlerOptions{Level: slog.LevelInfo}))
		cfg := agenttest.Config(t, "dev-away", tok, []string{dead}, h.Keys())
		cfg.Metrics = "127.0.0.1:0"
		a := agenttest.Start(t, cfg, agent.Options{Logger: logger, ConnectBackoff: 100 * time.Millisecond})
		testhelp.WaitFor(t, 30*time.Second, "five failed connects", func() bool {
			return agenttest.Metric(t, a.Reg, agent.MetricConnectErrors) >= 5
		})
		if a.BufferStats().Depth == 0 {
			t.Fatal("nothing queued: the test proves nothing")
		}
		out := logs.String()
		if n := strings.Count(out, "publish failed"); n != 0 {
			t.Fatalf("%d publish failures logged while unreachable, want 0:\n%s", n, out)
		}
		if n := strings.Count(out, "cannot connect to a broker"); n != 1 {
			t.Fatalf("%d lines for the outage, want 1:\n%s", n, out)
		}
	})
}
