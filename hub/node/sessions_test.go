package node

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/driftline/driftline/hub/state"
	"github.com/driftline/driftline/hub/store"
	"github.com/driftline/driftline/internal/testhelp"
	paho "github.com/eclipse/paho.mqtt.golang"
)

// mqttConnect connects a paho client to the node's broker; it returns the connect error.
func mqttConnect(t *testing.T, n *Node, clientID, user, pass string, clean bool, lost chan<- error) (paho.Client, error) {
	t.Helper()
	opts := paho.NewClientOptions().AddBroker(n.MQTTURL()).SetClientID(clientID).SetUsername(user).SetPassword(pass).
		SetCleanSession(clean).SetAutoReconnect(false).SetConnectTimeout(5 * time.Second)
	if lost != nil {
		opts.SetConnectionLostHandler(func(_ paho.Client, err error) { lost <- err })
	}
	c := paho.NewClient(opts)
	tk := c.Connect()
	if !tk.WaitTimeout(10 * time.Second) {
		t.Fatalf("connect %s: timeout", clientID)
	}
	if tk.Error() != nil {
		return nil, tk.Error()
	}
	t.Cleanup(func() { c.Disconnect(20) })
	return c, nil
}

func createDevice(t *testing.T, n *Node, tok, id string) string {
	t.Helper()
	var dev struct {
		Token string `json:"token"`
	}
	call(t, n, tok, http.MethodPost, "/api/v1/devices", map[string]any{"id": id}, http.StatusCreated, &dev)
	return dev.Token
}

func createToken(t *testing.T, n *Node, tok, name, role string) (id, secret string) {
	t.Helper()
	var out struct {
		ID    string `json:"id"`
		Token string `json:"token"`
	}
	call(t, n, tok, http.MethodPost, "/api/v1/tokens", map[string]string{"name": name, "role": role}, http.StatusCreated, &out)
	return out.ID, out.Token
}

// TestClientIDSquattingAttack: device d2 connects with client id d1 and a persistent session;
// d1 must still come online, and deleting d2 leaves nothing of it in the broker.
func TestClientIDSquattingAttack(t *testing.T) {
	n, tok := testNode(t)
	t1 := createDevice(t, n, tok, "d1")
	t2 := createDevice(t, n, tok, "d2")
	if c, err := mqttConnect(t, n, "d1", "d2", t2, false, nil); err == nil {
		c.Disconnect(20)
		t.Error("device d2 connected with client id d1")
	}
	if _, err := mqttConnect(t, n, "d1", "d1", t1, true, nil); err != nil {
		t.Fatalf("d1 cannot come online: %v", err)
	}
	// d2's own persistent session goes when d2 is deleted.
	c2, err := mqttConnect(t, n, "d2", "d2", t2, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	c2.Disconnect(20)
	call(t, n, tok, http.MethodDelete, "/api/v1/devices/d2", nil, http.StatusOK, nil)
	testhelp.WaitFor(t, 10*time.Second, "d2's session removed", func() bool {
		_, ok := n.broker.Session("d2")
		return !ok
	})
}

// TestTokenTakesDeviceIDAttack: a viewer token ignores the user name, so it used to pass the
// take-over check with the device's id as user name. It is refused, and the device stays on.
func TestTokenTakesDeviceIDAttack(t *testing.T) {
	n, tok := testNode(t)
	t1 := createDevice(t, n, tok, "d1")
	_, view := createToken(t, n, tok, "dash", "viewer")
	lost := make(chan error, 1)
	if _, err := mqttConnect(t, n, "d1", "d1", t1, true, lost); err != nil {
		t.Fatal(err)
	}
	if c, err := mqttConnect(t, n, "d1", "d1", view, false, nil); err == nil {
		c.Disconnect(20)
		t.Error("a viewer token took client id d1")
	}
	select {
	case err := <-lost:
		t.Fatalf("d1 was cut off: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
}

// TestDeletingTokenDisconnects: a deleted viewer token's MQTT connection is closed at once.
func TestDeletingTokenDisconnects(t *testing.T) {
	n, tok := testNode(t)
	id, view := createToken(t, n, tok, "dash", "viewer")
	lost := make(chan error, 1)
	if _, err := mqttConnect(t, n, "@viewer:"+id, "dash", view, true, lost); err != nil {
		t.Fatal(err)
	}
	call(t, n, tok, http.MethodDelete, "/api/v1/tokens/"+id, nil, http.StatusOK, nil)
	select {
	case <-lost:
	case <-time.After(10 * time.Second):
		t.Fatal("deleted viewer token still connected")
	}
}

// TestDeviceAddedKeepsFirstConnection: the credentials watcher follows the change feed behind
// the API, so it may hear that a device was created after the device's agent connected (under
// load, TestDeviceProtocol's device was cut off that way and never got its desired state). A
// creation must not end the device's sessions. The watcher here reads a feed the test writes,
// so the late creation is certain; a later change for d2 shows the creation was handled.
func TestDeviceAddedKeepsFirstConnection(t *testing.T) {
	n, tok := testNode(t)
	t1 := createDevice(t, n, tok, "d1")
	t2 := createDevice(t, n, tok, "d2")
	lost1, lost2 := make(chan error, 1), make(chan error, 1)
	if _, err := mqttConnect(t, n, "d1", "d1", t1, true, lost1); err != nil {
		t.Fatal(err)
	}
	if _, err := mqttConnect(t, n, "d2", "d2", t2, true, lost2); err != nil {
		t.Fatal(err)
	}
	feed := store.NewFeed()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	sub := feed.Subscribe() // before Publish: a subscription sees what is published after it
	go func() { defer close(done); n.watchCredentials(ctx, sub) }()
	t.Cleanup(func() { cancel(); <-done })
	feed.Publish([]store.Change{
		{Index: 1, Event: state.Change{Kind: state.ChangeDeviceAdded, Device: "d1"}},
		{Index: 2, Event: state.Change{Kind: state.ChangeDeviceToken, Device: "d2"}},
	})
	select {
	case <-lost2: // the re-key after it ends d2's session: d1's creation was handled
	case <-time.After(10 * time.Second):
		t.Fatal("the watcher did not handle d2's re-key")
	}
	// Forget removes a session before it returns, so the broker's table is certain here.
	if connected, ok := n.broker.Session("d1"); !ok || !connected {
		t.Fatalf("d1's creation, heard after it connected, cut it off (session %v, connected %v)", ok, connected)
	}
	select {
	case err := <-lost1:
		t.Fatalf("d1 lost its connection: %v", err)
	default:
	}
}
