package broker

import (
	"bytes"
	"crypto/rand"
	"errors"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/driftline/driftline/internal/testhelp"
	"github.com/driftline/driftline/shared/kv"
	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// testBroker is a broker on 127.0.0.1:0 with the tests' users.
type testBroker struct {
	*Broker
	auth *tableAuth
	reg  *prometheus.Registry
	url  string
}

func startBroker(t *testing.T, cfg Config) *testBroker {
	t.Helper()
	tb := &testBroker{auth: newTableAuth(), reg: prometheus.NewRegistry()}
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.Auth == nil {
		cfg.Auth = tb.auth
	}
	if cfg.Registerer == nil {
		cfg.Registerer = tb.reg
	}
	if cfg.Logger == nil {
		cfg.Logger = testhelp.Logger(t, slog.LevelInfo)
	}
	b, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = b.Close() })
	tb.Broker = b
	tb.url = "tcp://" + b.Addr()
	return tb
}

func TestEmbeddedACL(t *testing.T) {
	b := startBroker(t, Config{})
	runACLSuite(t, b.url, true)
	if n := testutil.ToFloat64(b.Broker.acl.m.rejected.WithLabelValues(reasonAuth)); n < 4 {
		t.Errorf("rejected{reason=auth} = %v, want >= 4", n)
	}
	if n := testutil.ToFloat64(b.Broker.acl.m.rejected.WithLabelValues(reasonPublish)); n < 1 {
		t.Errorf("rejected{reason=publish} = %v, want >= 1", n)
	}
}

func TestHubPublishReachesDevice(t *testing.T) {
	b := startBroker(t, Config{})
	dev := mustConnect(t, clientOpts(b.url, userDevA, userDevA))
	rec := &recorder{}
	subscribe(t, dev, "dl/v1/dev/dev-a/#", 1, rec.handle)

	if err := b.Publish("dl/v1/dev/dev-a/desired", []byte(`{"rev":1}`), true, 1); err != nil {
		t.Fatal(err)
	}
	rec.wait(t, "dl/v1/dev/dev-a/desired", []byte(`{"rev":1}`))

	// Device B, subscribed to its own subtree, never sees device A's desired state.
	recB := &recorder{}
	devB := mustConnect(t, clientOpts(b.url, userDevB, userDevB))
	subscribe(t, devB, "dl/v1/dev/dev-b/#", 1, recB.handle)
	if err := b.Publish("dl/v1/dev/dev-b/desired", []byte(`{"rev":7}`), false, 1); err != nil {
		t.Fatal(err)
	}
	recB.wait(t, "dl/v1/dev/dev-b/desired", nil)
	if _, ok := recB.find("dl/v1/dev/dev-a/desired", nil); ok {
		t.Fatal("device B received device A's desired state")
	}
	if n := testutil.ToFloat64(b.acl.m.messages.WithLabelValues("desired")); n != 2 { // inline: counted before Publish returns
		t.Errorf("messages{topic_kind=desired} = %v, want 2", n)
	}
}

func TestPublishRefusesBadInput(t *testing.T) {
	b := startBroker(t, Config{})
	cases := []struct {
		name    string
		topic   string
		payload []byte
		qos     byte
		want    error
	}{
		{"empty topic", "", nil, 0, ErrBadTopic},
		{"wildcard", "dl/v1/dev/+/desired", nil, 0, ErrBadTopic},
		{"hash", "dl/v1/#", nil, 0, ErrBadTopic},
		{"qos 3", "dl/v1/x", nil, 3, ErrBadTopic},
		{"too large", "dl/v1/dev/dev-a/chunk", make([]byte, DefaultMaxPacketSize), 1, ErrTooLarge},
	}
	for _, c := range cases {
		if err := b.Publish(c.topic, c.payload, false, c.qos); !errors.Is(err, c.want) {
			t.Errorf("%s: err = %v, want %v", c.name, err, c.want)
		}
	}
	if err := b.Subscribe("dl/v1/#/x", func(string, []byte) {}); !errors.Is(err, ErrBadTopic) {
		t.Errorf("Subscribe bad filter: err = %v", err)
	}
	_ = b.Close()
	if err := b.Publish("dl/v1/x", nil, false, 0); !errors.Is(err, ErrClosed) {
		t.Errorf("Publish after Close: err = %v", err)
	}
}

func TestOneMiBFrame(t *testing.T) {
	b := startBroker(t, Config{})
	frame := make([]byte, MaxFrame)
	_, _ = rand.Read(frame)

	dev := mustConnect(t, clientOpts(b.url, userDevA, userDevA))
	rec := &recorder{}
	subscribe(t, dev, "dl/v1/dev/dev-a/chunk", 1, rec.handle)
	if err := b.Publish("dl/v1/dev/dev-a/chunk", frame, false, 1); err != nil {
		t.Fatal(err)
	}
	got := rec.wait(t, "dl/v1/dev/dev-a/chunk", nil)
	if !bytes.Equal(got.payload, frame) {
		t.Fatalf("frame: got %d bytes, want the %d sent", len(got.payload), len(frame))
	}

	// A device may also send a full frame upstream (e.g. a profile).
	var hubGot atomic.Int64
	if err := b.Subscribe("dl/v1/dev/+/profile", func(_ string, p []byte) {
		if bytes.Equal(p, frame) {
			hubGot.Add(1)
		}
	}); err != nil {
		t.Fatal(err)
	}
	publish(t, dev, "dl/v1/dev/dev-a/profile", 1, false, frame)
	testhelp.WaitFor(t, 10*time.Second, "hub handler got the frame", func() bool { return hubGot.Load() == 1 })
}

func TestRevokeDisconnectsAtOnce(t *testing.T) {
	b := startBroker(t, Config{})
	lost := make(chan error, 1)
	opts := clientOpts(b.url, userDevA, userDevA).SetConnectionLostHandler(func(_ paho.Client, err error) { lost <- err })
	dev := mustConnect(t, opts)
	subscribe(t, dev, "dl/v1/dev/dev-a/#", 1, func(paho.Client, paho.Message) {})
	other := mustConnect(t, clientOpts(b.url, userDevB, userDevB))

	b.auth.revoke(userDevA) // the hub invalidates the token first ...
	b.Revoke(userDevA)      // ... then cuts the connection
	select {
	case err := <-lost:
		t.Logf("device A lost its connection: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("revoked device still connected after 5s")
	}
	if _, err := connect(t, clientOpts(b.url, userDevA, userDevA)); err == nil {
		t.Fatal("revoked device reconnected")
	}
	if !other.IsConnectionOpen() {
		t.Fatal("Revoke disconnected another device")
	}
	if n := testutil.ToFloat64(b.acl.m.rejected.WithLabelValues(reasonRevoked)); n != 1 {
		t.Errorf("rejected{reason=revoked} = %v, want 1", n)
	}
	b.acl.mu.RLock()
	defer b.acl.mu.RUnlock()
	if _, ok := b.acl.byOwner[Principal{Kind: Device, ID: userDevA}]; ok {
		t.Error("ACL still indexes the revoked device")
	}
}

func TestRevokeViewer(t *testing.T) {
	b := startBroker(t, Config{})
	lost := make(chan error, 1)
	mustConnect(t, clientOpts(b.url, cid(userViewer, "dashboard"), userViewer).
		SetConnectionLostHandler(func(_ paho.Client, err error) { lost <- err }))
	dev := mustConnect(t, clientOpts(b.url, userDevA, userDevA))
	b.RevokePrincipal(Principal{Kind: Device, ID: userViewer}) // wrong kind: nobody
	b.RevokePrincipal(Principal{Kind: Viewer, ID: userViewer})
	select {
	case <-lost:
	case <-time.After(5 * time.Second):
		t.Fatal("revoked viewer still connected after 5s")
	}
	if !dev.IsConnectionOpen() {
		t.Fatal("revoking the viewer disconnected a device")
	}
}

func TestClientIDTakeoverByOtherUserRefused(t *testing.T) {
	b := startBroker(t, Config{})
	lost := make(chan error, 1)
	devA := mustConnect(t, clientOpts(b.url, cid(userDevA, "x"), userDevA).
		SetConnectionLostHandler(func(_ paho.Client, err error) { lost <- err }))
	if _, err := connect(t, clientOpts(b.url, cid(userDevA, "x"), userDevB)); err == nil {
		t.Fatal("device B took over device A's client id")
	}
	if _, err := connect(t, clientOpts(b.url, "inline", userHub)); err == nil {
		t.Fatal("a client took the hub's inline client id")
	}
	// The same principal may take its own session over (a reconnecting agent).
	mustConnect(t, clientOpts(b.url, cid(userDevA, "x"), userDevA))
	select {
	case <-lost:
	case <-time.After(5 * time.Second):
		t.Fatal("the same user's reconnect did not take the session over")
	}
	_ = devA
}

func TestWillOutsideOwnSubtreeRefused(t *testing.T) {
	b := startBroker(t, Config{})
	cases := []struct {
		topic string
		ok    bool
	}{
		{"dl/v1/dev/dev-a/status", true},
		{"dl/v1/dev/dev-b/status", false},
		{"dl/v1/dev/dev-a/desired", false},
	}
	for i, c := range cases {
		opts := clientOpts(b.url, cid(userDevA, "will-"+string(rune('0'+i))), userDevA).SetWill(c.topic, `{"online":false}`, 1, true)
		cl, err := connect(t, opts)
		if (err == nil) != c.ok {
			t.Errorf("will on %s: connect err = %v, want ok=%v", c.topic, err, c.ok)
		}
		if cl != nil {
			cl.Disconnect(0)
		}
	}
}

func TestSubscribeHandlerNeverBlocksBroker(t *testing.T) {
	b := startBroker(t, Config{HandlerWorkers: 1, HandlerQueue: 2})
	release := make(chan struct{})
	var handled atomic.Int64
	if err := b.Subscribe("dl/v1/dev/+/heartbeat", func(string, []byte) {
		<-release
		handled.Add(1)
	}); err != nil {
		t.Fatal(err)
	}
	dev := mustConnect(t, clientOpts(b.url, userDevA, userDevA))
	const n = 20
	for i := 0; i < n; i++ { // each publish completes although the handler is stuck
		publish(t, dev, "dl/v1/dev/dev-a/heartbeat", 1, false, []byte{byte(i)})
	}
	// The PUBACK goes out before mochi routes the message, so wait for the last ones to be routed.
	// At most three are accepted: one in the stuck handler, two queued.
	var dropped float64
	testhelp.WaitFor(t, 5*time.Second, "drops counted", func() bool {
		dropped = testutil.ToFloat64(b.acl.m.dropped.WithLabelValues(reasonHandlerQueue))
		return dropped >= n-3
	})
	close(release)
	testhelp.WaitFor(t, 5*time.Second, "queued messages handled", func() bool { return handled.Load()+int64(dropped) == n })
	testhelp.WaitFor(t, 5*time.Second, "messages{heartbeat} = 20", func() bool {
		return testutil.ToFloat64(b.acl.m.messages.WithLabelValues("heartbeat")) == n
	})
}

func TestSubscribeKeepsTopicOrder(t *testing.T) {
	b := startBroker(t, Config{HandlerWorkers: 4})
	var got []byte
	done := make(chan struct{})
	if err := b.Subscribe("dl/v1/dev/dev-a/reported", func(_ string, p []byte) {
		got = append(got, p[0]) // one topic: one worker, so no race
		if len(got) == 100 {
			close(done)
		}
	}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100; i++ {
		if err := b.Publish("dl/v1/dev/dev-a/reported", []byte{byte(i)}, false, 1); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatalf("handled %d of 100", len(got))
	}
	for i, v := range got {
		if int(v) != i {
			t.Fatalf("message %d arrived as %d", i, v)
		}
	}
}

func TestRetainedDesiredSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	db, err := kv.Open(dir, kv.Edge)
	if err != nil {
		t.Fatal(err)
	}
	b1 := startBroker(t, Config{DB: db})
	desired := []byte(`{"rev":3,"models":[{"name":"m","version":2}]}`)
	if err := b1.Publish("dl/v1/dev/dev-a/desired", desired, true, 1); err != nil {
		t.Fatal(err)
	}
	if err := b1.Publish("dl/v1/dev/dev-b/desired", []byte(`{"rev":1}`), true, 1); err != nil {
		t.Fatal(err)
	}
	if err := b1.Publish("dl/v1/dev/dev-b/desired", nil, true, 1); err != nil { // cleared
		t.Fatal(err)
	}
	// A persistent session: device A subscribes with clean session off.
	sess := mustConnect(t, clientOpts(b1.url, cid(userDevA, "agent"), userDevA).SetCleanSession(false))
	subscribe(t, sess, "dl/v1/dev/dev-a/chunk", 1, func(paho.Client, paho.Message) {})
	sess.Disconnect(50)
	_ = b1.Close()
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db, err = kv.Open(dir, kv.Edge)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	b2 := startBroker(t, Config{DB: db})

	dev := mustConnect(t, clientOpts(b2.url, userDevA, userDevA))
	rec := &recorder{}
	subscribe(t, dev, "dl/v1/dev/dev-a/desired", 1, rec.handle)
	if m := rec.wait(t, "dl/v1/dev/dev-a/desired", nil); !bytes.Equal(m.payload, desired) || !m.retain {
		t.Fatalf("retained after restart: %q retain=%v, want %q retained", m.payload, m.retain, desired)
	}
	var hubSaw atomic.Int64
	if err := b2.Subscribe("dl/v1/dev/+/desired", func(topic string, _ []byte) {
		if topic == "dl/v1/dev/dev-b/desired" {
			hubSaw.Add(100)
		}
		hubSaw.Add(1)
	}); err != nil {
		t.Fatal(err)
	}
	testhelp.WaitFor(t, 5*time.Second, "hub handler saw the retained state", func() bool { return hubSaw.Load() >= 1 })
	if hubSaw.Load() != 1 {
		t.Fatalf("hub saw %d (a cleared retained message came back?)", hubSaw.Load())
	}

	// The persistent session kept its subscription: reconnect without subscribing and receive.
	recS := &recorder{}
	opts := clientOpts(b2.url, cid(userDevA, "agent"), userDevA).SetCleanSession(false).SetDefaultPublishHandler(recS.handle)
	mustConnect(t, opts)
	if err := b2.Publish("dl/v1/dev/dev-a/chunk", []byte("frame-1"), false, 1); err != nil {
		t.Fatal(err)
	}
	recS.wait(t, "dl/v1/dev/dev-a/chunk", []byte("frame-1"))
}

func TestNewRefusesBadConfig(t *testing.T) {
	auth := newTableAuth()
	cases := []struct {
		name string
		cfg  Config
	}{
		{"no auth", Config{Addr: "127.0.0.1:0"}},
		{"no listener", Config{Auth: auth}},
		{"tls without cert", Config{Auth: auth, TLSAddr: "127.0.0.1:0"}},
		{"wildcard prefix", Config{Auth: auth, Addr: "127.0.0.1:0", Prefix: "dl/+"}},
		{"empty level", Config{Auth: auth, Addr: "127.0.0.1:0", Prefix: "dl//v1"}},
		{"sys prefix", Config{Auth: auth, Addr: "127.0.0.1:0", Prefix: "$SYS"}},
		{"missing cert file", Config{Auth: auth, TLSAddr: "127.0.0.1:0", TLSCertFile: "/nonexistent.pem", TLSKeyFile: "/nonexistent.key"}},
	}
	for _, c := range cases {
		b, err := New(c.cfg)
		if err == nil {
			_ = b.Close()
			t.Errorf("%s: New accepted the config", c.name)
			continue
		}
		t.Logf("%s: %v", c.name, err)
	}
}

// TestRetainedNeverExpires checks the expiry mochi computes for retained messages from the hub
// and from a device: with mochi's default maximum (24 h) both would carry a deadline.
func TestRetainedNeverExpires(t *testing.T) {
	b := startBroker(t, Config{})
	if err := b.Publish("dl/v1/dev/dev-a/desired", []byte(`{"rev":1}`), true, 1); err != nil {
		t.Fatal(err)
	}
	dev := mustConnect(t, clientOpts(b.url, userDevA, userDevA))
	publish(t, dev, "dl/v1/dev/dev-a/status", 1, true, []byte(`{"online":true}`))
	for _, topic := range []string{"dl/v1/dev/dev-a/desired", "dl/v1/dev/dev-a/status"} {
		var m *retainedMsg
		testhelp.WaitFor(t, 5*time.Second, "retained "+topic, func() bool {
			var ok bool
			m, ok = b.ret.get(topic)
			return ok
		})
		if m.expiry != 0 {
			t.Errorf("retained %s expires at %d, want never", topic, m.expiry)
		}
	}
}

// TestSubscribersCountsClients: Subscribers counts the clients whose subscriptions match a
// topic (once per client, whatever its matching filters), and forgets one that unsubscribed
// (the shared chunk fan-out paces by it).
func TestSubscribersCountsClients(t *testing.T) {
	b := startBroker(t, Config{})
	const topic = "dl/v1/dev/dev-a/chunk"
	if n := b.Subscribers(topic); n != 0 {
		t.Fatalf("no client: %d subscribers", n)
	}
	a := mustConnect(t, clientOpts(b.url, userDevA, userDevA))
	subscribe(t, a, topic, 1, func(paho.Client, paho.Message) {})
	subscribe(t, a, "dl/v1/dev/dev-a/#", 1, func(paho.Client, paho.Message) {})
	if n := b.Subscribers(topic); n != 1 {
		t.Fatalf("one client, two matching filters: %d subscribers", n)
	}
	for _, f := range []string{topic, "dl/v1/dev/dev-a/#"} {
		if tok := a.Unsubscribe(f); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("unsubscribe: %v", tok.Error())
		}
	}
	if n := b.Subscribers(topic); n != 0 {
		t.Fatalf("client unsubscribed: %d subscribers", n)
	}
}
