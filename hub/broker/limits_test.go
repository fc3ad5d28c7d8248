package broker

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/driftline/driftline/internal/hubproc"
	"github.com/driftline/driftline/internal/testhelp"
)

// TestIdleSocketClosed: a socket that never sends CONNECT is closed after ConnectTimeout, on
// the plain and on the TLS listener (where it never starts its handshake), and counted.
func TestIdleSocketClosed(t *testing.T) {
	dir := t.TempDir()
	cert, key, _ := selfSigned(t, dir)
	b := startBroker(t, Config{Limits: Limits{ConnectTimeout: 300 * time.Millisecond}, TLSAddr: "127.0.0.1:0", TLSCertFile: cert, TLSKeyFile: key})
	for _, addr := range []string{b.Addr(), b.TLSAddr()} {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		start := time.Now()
		_, err = conn.Read(make([]byte, 1))
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("%s: idle socket still open after 5s", addr)
		}
		if !errors.Is(err, io.EOF) && !strings.Contains(err.Error(), "reset") {
			t.Fatalf("%s: read: %v", addr, err)
		}
		t.Logf("%s: closed after %v", addr, time.Since(start).Round(time.Millisecond))
	}
	testhelp.WaitFor(t, 5*time.Second, "connect timeouts counted", func() bool {
		return testutil.ToFloat64(b.acl.m.rejected.WithLabelValues(reasonConnectTimeout)) == 2
	})
	testhelp.WaitFor(t, 5*time.Second, "no pending socket", func() bool { return testutil.ToFloat64(b.m.pending) == 0 })
}

// TestDefaultConnectTimeout: the default an operator gets is 10 s.
func TestDefaultConnectTimeout(t *testing.T) {
	if c := withDefaults(Config{}); c.ConnectTimeout != 10*time.Second || c.MaxPendingSockets != DefaultMaxPendingSockets {
		t.Fatalf("defaults: %v, %d", c.ConnectTimeout, c.MaxPendingSockets)
	}
}

// TestPendingSocketCap: with two sockets unauthenticated, a third is closed at accept; a client
// that authenticates no longer counts, so the broker serves again once the idle ones are gone.
func TestPendingSocketCap(t *testing.T) {
	b := startBroker(t, Config{Limits: Limits{MaxPendingSockets: 2, ConnectTimeout: 2 * time.Second}})
	mustConnect(t, clientOpts(b.url, userDevA, userDevA)) // authenticated: not pending
	var idle []net.Conn
	for i := 0; i < 2; i++ {
		c, err := net.Dial("tcp", b.Addr())
		if err != nil {
			t.Fatal(err)
		}
		idle = append(idle, c)
	}
	testhelp.WaitFor(t, 5*time.Second, "two pending", func() bool { return testutil.ToFloat64(b.m.pending) == 2 })
	third, err := net.Dial("tcp", b.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer third.Close()
	_ = third.SetReadDeadline(time.Now().Add(time.Second))
	if _, err := third.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("third socket not closed at accept: %v", err)
	}
	if n := testutil.ToFloat64(b.acl.m.rejected.WithLabelValues(reasonPendingCap)); n != 1 {
		t.Fatalf("rejected{pending_cap} = %v", n)
	}
	for _, c := range idle {
		c.Close()
	}
	testhelp.WaitFor(t, 5*time.Second, "pending back to 0", func() bool { return testutil.ToFloat64(b.m.pending) == 0 })
	mustConnect(t, clientOpts(b.url, userDevB, userDevB))
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// TestDeviceRateLimit: a device publishing far beyond its rate has the excess dropped and
// counted; the hub receives no more than the burst.
func TestDeviceRateLimit(t *testing.T) {
	b := startBroker(t, Config{Limits: Limits{MaxDeviceRate: 1, DeviceBurst: 5}})
	var got int64
	gotc := make(chan struct{}, 100)
	if err := b.Subscribe("dl/v1/dev/+/heartbeat", func(string, []byte) { gotc <- struct{}{} }); err != nil {
		t.Fatal(err)
	}
	dev := mustConnect(t, clientOpts(b.url, userDevA, userDevA))
	for i := 0; i < 20; i++ {
		dev.Publish("dl/v1/dev/dev-a/heartbeat", 0, false, []byte("{}")).WaitTimeout(time.Second)
	}
	testhelp.WaitFor(t, 5*time.Second, "excess counted", func() bool {
		return testutil.ToFloat64(b.acl.m.rejected.WithLabelValues(reasonRate)) >= 14
	})
	for len(gotc) > 0 {
		<-gotc
		got++
	}
	if got > 6 {
		t.Fatalf("hub received %d heartbeats, burst is 5", got)
	}
}

// TestDeviceRetainedCap: a device cannot retain more topics than MaxRetainedPerDevice; it can
// still replace and clear those it holds.
func TestDeviceRetainedCap(t *testing.T) {
	b := startBroker(t, Config{Limits: Limits{MaxRetainedPerDevice: 2}})
	dev := mustConnect(t, clientOpts(b.url, userDevA, userDevA))
	for _, k := range []string{"status", "reported", "heartbeat", "drift/x"} {
		publish(t, dev, "dl/v1/dev/dev-a/"+k, 1, true, []byte(`{"v":1}`))
	}
	publish(t, dev, "dl/v1/dev/dev-a/status", 1, true, []byte(`{"v":2}`)) // replacing is fine
	if n := retainedUnder(b.Broker, "dl/v1/dev/dev-a/"); n != 2 {
		t.Fatalf("device holds %d retained topics, cap 2", n)
	}
	if n := testutil.ToFloat64(b.acl.m.rejected.WithLabelValues(reasonRetainedCap)); n != 2 {
		t.Fatalf("rejected{retained_cap} = %v, want 2", n)
	}
	if m, ok := b.ret.get("dl/v1/dev/dev-a/status"); !ok || string(m.payload) != `{"v":2}` {
		t.Fatalf("status not replaced: %v", m)
	}
	// Clearing a topic frees its place under the cap.
	publish(t, dev, "dl/v1/dev/dev-a/reported", 1, true, nil)
	publish(t, dev, "dl/v1/dev/dev-a/heartbeat", 1, true, []byte(`{"v":3}`))
	if _, ok := b.ret.get("dl/v1/dev/dev-a/heartbeat"); !ok {
		t.Fatal("a retained topic refused after the device cleared one of its two")
	}
	if n := retainedUnder(b.Broker, "dl/v1/dev/dev-a/"); n != 2 {
		t.Fatalf("device holds %d retained topics, cap 2", n)
	}
}

// TestRefusedConnectLogOncePerInterval: a client retrying with a bad token gets one log line per
// interval, not one (or two) per attempt; every refusal is counted.
func TestRefusedConnectLogOncePerInterval(t *testing.T) {
	buf := &hubproc.Output{}
	b := startBroker(t, Config{Logger: slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelInfo}))})
	for i := 0; i < 10; i++ {
		if _, err := connect(t, clientOpts(b.url, userDevA, userDevA).SetPassword("wrong").SetProtocolVersion(4)); err == nil {
			t.Fatal("bad token accepted")
		}
	}
	if n := testutil.ToFloat64(b.acl.m.rejected.WithLabelValues(reasonAuth)); n != 10 {
		t.Fatalf("rejected{auth} = %v, want 10", n)
	}
	lines := 0
	for _, l := range strings.Split(buf.String(), "\n") {
		if strings.Contains(l, "refused") || strings.Contains(l, "bad username") {
			lines++
		}
	}
	if lines != 1 {
		t.Fatalf("%d log lines about 10 refusals of one client, want 1:\n%s", lines, buf.String())
	}
}

func TestLogLimiter(t *testing.T) {
	l := newLogLimiter(time.Minute, 2)
	t0 := time.Unix(0, 0)
	if ok, _, _ := l.note("a", t0); !ok {
		t.Fatal("first event of a not logged")
	}
	for i := 0; i < 5; i++ {
		if ok, _, _ := l.note("a", t0.Add(time.Second)); ok {
			t.Fatal("repeat within the interval logged")
		}
	}
	if ok, _, _ := l.note("b", t0); !ok {
		t.Fatal("first event of b not logged")
	}
	if ok, _, _ := l.note("c", t0); ok {
		t.Fatal("budget of 2 lines exceeded")
	}
	ok, sup, over := l.note("a", t0.Add(time.Minute))
	if !ok || sup != 5 || over != 1 {
		t.Fatalf("after the interval: log=%v suppressed=%d overflow=%d, want true 5 1", ok, sup, over)
	}
}
