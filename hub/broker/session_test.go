package broker

import (
	"slices"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/driftline/driftline/internal/testhelp"
	"github.com/driftline/driftline/shared/kv"
)

// TestClientIDSquatting is the attack of issue 15: device B connects with device A's id and a
// persistent session. It must be refused, so device A still comes online.
func TestClientIDSquatting(t *testing.T) {
	b := startBroker(t, Config{})
	if c, err := connect(t, clientOpts(b.url, userDevA, userDevB).SetCleanSession(false)); err == nil {
		c.Disconnect(0)
		t.Error("device B connected with device A's client id")
	}
	mustConnect(t, clientOpts(b.url, userDevA, userDevA))
	if n := testutil.ToFloat64(b.acl.m.rejected.WithLabelValues(reasonClientID)); n < 1 {
		t.Errorf("rejected{reason=client_id} = %v, want >= 1", n)
	}
}

// TestViewerCannotTakeDeviceID: a viewer (and an admin) token with a device's client id is
// refused and the device stays connected.
func TestViewerCannotTakeDeviceID(t *testing.T) {
	b := startBroker(t, Config{})
	lost := make(chan error, 1)
	mustConnect(t, clientOpts(b.url, userDevA, userDevA).
		SetConnectionLostHandler(func(_ paho.Client, err error) { lost <- err }))
	for _, u := range []string{userViewer, userHub} {
		if c, err := connect(t, clientOpts(b.url, userDevA, u)); err == nil {
			c.Disconnect(0)
			t.Errorf("%s took the device's client id", u)
		}
	}
	select {
	case err := <-lost:
		t.Fatalf("device lost its connection: %v", err)
	default:
	}
	// Their own namespaces work.
	mustConnect(t, clientOpts(b.url, ClientIDFor(Principal{Kind: Viewer, ID: userViewer}, "dash"), userViewer))
	mustConnect(t, clientOpts(b.url, ClientIDFor(Principal{Kind: Hub, ID: userHub}, ""), userHub))
}

// TestForgetDeviceRemovesSessionsAndRetained: a deleted device's persistent sessions (connected
// or not) and its retained topics are gone, in memory and in the store, and the hub's own
// retained desired state of another device stays.
func TestForgetDeviceRemovesSessionsAndRetained(t *testing.T) {
	db, err := kv.Open(t.TempDir(), kv.Edge)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	b := startBroker(t, Config{DB: db})
	sess := mustConnect(t, clientOpts(b.url, userDevB+":sim", userDevB).SetCleanSession(false))
	subscribe(t, sess, "dl/v1/dev/dev-b/chunk", 1, func(paho.Client, paho.Message) {})
	publish(t, sess, "dl/v1/dev/dev-b/status", 1, true, []byte(`{"online":true}`))
	sess.Disconnect(50)
	live := mustConnect(t, clientOpts(b.url, userDevB, userDevB).SetCleanSession(false))
	if err := b.Publish("dl/v1/dev/dev-a/desired", []byte(`{"rev":1}`), true, 1); err != nil {
		t.Fatal(err)
	}
	// Both sessions' records: mochi stores the live one's (OnSessionEstablished) after its
	// CONNACK, so the count alone could be reached without it, and its write land after Forget.
	testhelp.WaitFor(t, 5*time.Second, "sessions stored", func() bool {
		keys := storedKeys(t, db)
		return len(keys) >= 5 && slices.Contains(keys, "broker/cli/"+userDevB)
	})

	b.auth.revoke(userDevB)
	b.Forget(Principal{Kind: Device, ID: userDevB}, false)
	testhelp.WaitFor(t, 5*time.Second, "live session closed", func() bool { return !live.IsConnectionOpen() })
	for _, id := range []string{userDevB, userDevB + ":sim"} {
		if _, ok := b.srv.Clients.Get(id); ok {
			t.Errorf("session %s still in the broker", id)
		}
	}
	if n := retainedUnder(b.Broker, "dl/v1/dev/dev-b/"); n != 0 {
		t.Errorf("%d retained messages of the deleted device remain", n)
	}
	if n := retainedUnder(b.Broker, "dl/v1/dev/dev-a/"); n != 1 {
		t.Errorf("device A's retained desired: %d messages, want 1", n)
	}
	for _, k := range storedKeys(t, db) {
		if k != "broker/ret/dl/v1/dev/dev-a/desired" {
			t.Errorf("stored key %s remains", k)
		}
	}
}
