package broker

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// Test users, the same for the embedded broker and for Mosquitto.
const (
	userDevA   = "dev-a"
	userDevB   = "dev-b"
	userViewer = "viewer-1"
	userHub    = "hub"
)

var testCreds = map[string]string{
	userDevA:   "token-a-7f3c9e",
	userDevB:   "token-b-21d0aa",
	userViewer: "view-token-5b1e",
	userHub:    "hub-secret-c4e2",
}

var errBadCredentials = errors.New("bad credentials")

// tableAuth is the tests' Authenticator: a fixed table of users, as the hub's would be after its
// lookups, with revocation.
type tableAuth struct {
	mu      sync.Mutex
	users   map[string]string
	revoked map[string]bool
}

func newTableAuth() *tableAuth {
	u := make(map[string]string, len(testCreds))
	for k, v := range testCreds {
		u[k] = v
	}
	return &tableAuth{users: u, revoked: map[string]bool{}}
}

func (a *tableAuth) Authenticate(user string, password []byte) (Principal, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	want, ok := a.users[user]
	if !ok || a.revoked[user] || want != string(password) {
		return Principal{}, errBadCredentials
	}
	switch {
	case user == userHub:
		return Principal{Kind: Hub, ID: user}, nil
	case strings.HasPrefix(user, "viewer"):
		return Principal{Kind: Viewer, ID: user}, nil
	default:
		return Principal{Kind: Device, ID: user}, nil
	}
}

// testModels are the models each test device may fetch (broker.ModelAuthorizer).
var testModels = map[string][]string{userDevA: {"model-a"}}

// MayFetchModel lets a device read the shared chunk topic of its testModels.
func (a *tableAuth) MayFetchModel(device, model string) bool {
	for _, m := range testModels[device] {
		if m == model {
			return true
		}
	}
	return false
}

func (a *tableAuth) revoke(user string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.revoked[user] = true
}

// clientOpts are the paho options of a test client; adjust before connecting.
func clientOpts(url, clientID, user string) *paho.ClientOptions {
	return paho.NewClientOptions().
		AddBroker(url).
		SetClientID(clientID).
		SetUsername(user).
		SetPassword(testCreds[user]).
		SetCleanSession(true).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetConnectTimeout(5 * time.Second).
		SetWriteTimeout(5 * time.Second).
		SetDefaultPublishHandler(func(paho.Client, paho.Message) {})
}

// connect connects a client and disconnects it at the end of the test.
func connect(t testing.TB, opts *paho.ClientOptions) (paho.Client, error) {
	t.Helper()
	c := paho.NewClient(opts)
	tok := c.Connect()
	if !tok.WaitTimeout(10 * time.Second) {
		return nil, fmt.Errorf("connect: timeout")
	}
	if err := tok.Error(); err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Disconnect(50) })
	return c, nil
}

func mustConnect(t testing.TB, opts *paho.ClientOptions) paho.Client {
	t.Helper()
	c, err := connect(t, opts)
	if err != nil {
		t.Fatalf("connect %s: %v", opts.ClientID, err)
	}
	return c
}

// subscribe subscribes and returns the granted code (0x80: refused). Mochi 2.7.9 keeps the
// client's and its own packet ids in one in-flight table and answers 0x91 (packet id in use) when
// a SUBSCRIBE reuses the id of a QoS 1 message it is delivering to that client; a client must
// then subscribe again, and so does this helper.
func subscribe(t testing.TB, c paho.Client, filter string, qos byte, h paho.MessageHandler) byte {
	t.Helper()
	for attempt := 1; ; attempt++ {
		tok := c.Subscribe(filter, qos, h)
		if !tok.WaitTimeout(5 * time.Second) {
			t.Fatalf("subscribe %s: timeout", filter)
		}
		if err := tok.Error(); err != nil {
			t.Fatalf("subscribe %s: %v", filter, err)
		}
		st, ok := tok.(*paho.SubscribeToken)
		if !ok {
			t.Fatalf("subscribe %s: token type %T", filter, tok)
		}
		code, ok := st.Result()[filter]
		if !ok {
			t.Fatalf("subscribe %s: no result", filter)
		}
		if code != 0x91 || attempt == 5 {
			return code
		}
		t.Logf("subscribe %s: packet id in use (0x91), subscribing again", filter)
	}
}

func publish(t testing.TB, c paho.Client, topic string, qos byte, retain bool, payload []byte) {
	t.Helper()
	tok := c.Publish(topic, qos, retain, payload)
	if !tok.WaitTimeout(10 * time.Second) {
		t.Fatalf("publish %s: timeout", topic)
	}
	if err := tok.Error(); err != nil {
		t.Fatalf("publish %s: %v", topic, err)
	}
}

// recorder collects the messages a client receives, in order.
type recorder struct {
	mu   sync.Mutex
	msgs []received
}

type received struct {
	topic   string
	payload []byte
	retain  bool
	qos     byte
}

func (r *recorder) handle(_ paho.Client, m paho.Message) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, received{m.Topic(), append([]byte(nil), m.Payload()...), m.Retained(), m.Qos()})
}

// find returns the first message on topic with payload (nil payload: any).
func (r *recorder) find(topic string, payload []byte) (received, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range r.msgs {
		if m.topic == topic && (payload == nil || string(m.payload) == string(payload)) {
			return m, true
		}
	}
	return received{}, false
}

func (r *recorder) wait(t testing.TB, topic string, payload []byte) received {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if m, ok := r.find(topic, payload); ok {
			return m
		}
		if time.Now().After(deadline) {
			r.mu.Lock()
			defer r.mu.Unlock()
			var got []string
			for _, m := range r.msgs {
				got = append(got, m.topic+"="+string(m.payload))
			}
			t.Fatalf("timed out after 10s waiting for %q on %s; received: %v", payload, topic, got)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// cid is a client id in user's namespace (see ClientIDFor), with suffix ("": the root).
func cid(user, suffix string) string {
	p, err := newTableAuth().Authenticate(user, []byte(testCreds[user]))
	if err != nil { // an unknown user: a device-shaped id
		p = Principal{Kind: Device, ID: user}
	}
	return ClientIDFor(p, suffix)
}

// retainedUnder counts the broker's retained messages whose topic starts with prefix (ending
// with "/").
func retainedUnder(b *Broker, prefix string) int { return len(b.ret.under(prefix)) }
