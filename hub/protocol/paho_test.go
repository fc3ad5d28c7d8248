package protocol_test

import (
	"bytes"
	"fmt"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	hubbroker "github.com/driftline/driftline/hub/broker"
	"github.com/driftline/driftline/hub/broker/mosquittotest"
	"github.com/driftline/driftline/hub/protocol"
	"github.com/driftline/driftline/internal/testhelp"
	"github.com/driftline/driftline/shared/wire"
)

// TestPahoTransportKeepsOrder: the external-broker transport hands the messages of a topic to
// the handler in the order the broker delivered them. The hub keeps the last reported state a
// device sent; handled out of order, "activating" could land after "active" and stay.
func TestPahoTransportKeepsOrder(t *testing.T) {
	const user, pass, dev = "driftline-hub", "hub-secret", "dev-order"
	b := startHubMosquitto(t, "the external-broker order test", user, pass)
	u, err := url.Parse(b.URL())
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(user, pass)
	dial := func(id string) *protocol.PahoTransport {
		tr, err := protocol.DialPaho(protocol.PahoConfig{URLs: []string{u.String()}, ClientID: id})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(tr.Close)
		return tr
	}
	sub := dial("order-sub")
	// The publisher does not wait for each PUBACK, so messages arrive back to back.
	pub := paho.NewClient(paho.NewClientOptions().AddBroker(b.URL()).SetClientID("order-pub").
		SetUsername(user).SetPassword(pass))
	if tok := pub.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect publisher: %v", tok.Error())
	}
	defer pub.Disconnect(100)

	const n = 500
	topic := wire.Default().Reported(dev)
	var mu sync.Mutex
	var got []int
	done := make(chan struct{})
	err = sub.Subscribe(topic, func(_ string, payload []byte) {
		i, _ := strconv.Atoi(string(payload))
		mu.Lock()
		defer mu.Unlock()
		got = append(got, i)
		if len(got) == n {
			close(done)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	toks := make([]paho.Token, n)
	for i := range n {
		toks[i] = pub.Publish(topic, 1, false, []byte(strconv.Itoa(i)))
	}
	for _, tok := range toks {
		if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("publish: %v", tok.Error())
		}
	}
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("%d of %d messages arrived", len(got), n)
	}
	mu.Lock()
	defer mu.Unlock()
	for i, v := range got {
		if v != i {
			t.Fatalf("message %d handled at position %d: %s", v, i, fmt.Sprint(got[max(0, i-3):min(len(got), i+4)]))
		}
	}
}

// TestPahoSharedSubscriptionsAndSessions: three hub nodes' transports on one Mosquitto share the
// device-report subscription, so each message is handled by exactly one of them; and a node that
// is away keeps its session, so what the broker queued for it while it was disconnected arrives
// when it is back.
func TestPahoSharedSubscriptionsAndSessions(t *testing.T) {
	const user, pass = "driftline-hub", "hub-secret"
	b := startHubMosquitto(t, "the shared-subscription test", user, pass)
	u, err := url.Parse(b.URL())
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(user, pass)
	filter := wire.Default().AllDevices(wire.KindValidation)
	var mu sync.Mutex
	counts := map[string]map[string]int{} // node -> payload -> times
	total := func() (n int, dup bool) {
		mu.Lock()
		defer mu.Unlock()
		seen := map[string]bool{}
		for _, m := range counts {
			for p, c := range m {
				n += c
				if c > 1 || seen[p] {
					dup = true
				}
				seen[p] = true
			}
		}
		return n, dup
	}
	dial := func(node string) *protocol.PahoTransport {
		tr, err := protocol.DialPaho(protocol.PahoConfig{URLs: []string{u.String()}, ClientID: "driftline-hub-" + node})
		if err != nil {
			t.Fatal(err)
		}
		err = tr.SubscribeShared(filter, func(_ string, payload []byte) {
			mu.Lock()
			defer mu.Unlock()
			if counts[node] == nil {
				counts[node] = map[string]int{}
			}
			counts[node][string(payload)]++
		})
		if err != nil {
			t.Fatal(err)
		}
		return tr
	}
	nodes := []*protocol.PahoTransport{dial("n1"), dial("n2"), dial("n3")}
	defer func() {
		for _, n := range nodes {
			n.Close()
		}
	}()
	pub := paho.NewClient(paho.NewClientOptions().AddBroker(b.URL()).SetClientID("shared-pub").SetUsername(user).SetPassword(pass))
	if tok := pub.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect publisher: %v", tok.Error())
	}
	defer pub.Disconnect(100)
	publish := func(from, to int) {
		for i := from; i < to; i++ {
			tok := pub.Publish(wire.Default().Validation(fmt.Sprintf("d%d", i%7)), 1, false, []byte(strconv.Itoa(i)))
			if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
				t.Fatalf("publish: %v", tok.Error())
			}
		}
	}
	publish(0, 300)
	testhelp.WaitFor(t, 20*time.Second, "300 messages handled", func() bool { n, _ := total(); return n >= 300 })
	if n, dup := total(); n != 300 || dup {
		t.Fatalf("%d deliveries for 300 messages (duplicates: %v)", n, dup)
	}
	mu.Lock()
	if len(counts) < 2 {
		t.Errorf("one node handled everything: %d nodes", len(counts))
	}
	mu.Unlock()

	// All three away: the broker queues for their sessions; back, they get every message.
	for _, n := range nodes {
		n.Close()
	}
	publish(300, 400)
	nodes = []*protocol.PahoTransport{dial("n1"), dial("n2"), dial("n3")}
	testhelp.WaitFor(t, 20*time.Second, "the messages queued while away", func() bool { n, _ := total(); return n >= 400 })
	if n, dup := total(); n != 400 || dup {
		t.Fatalf("%d deliveries for 400 messages (duplicates: %v)", n, dup)
	}
}

// startHubMosquitto starts a Mosquitto (see mosquittotest.Start; what names it in the skip
// message) whose only credential is the hub's user and password, with the ACL the hub renders.
func startHubMosquitto(t *testing.T, what, user, pass string) *mosquittotest.Broker {
	t.Helper()
	var pw, acl bytes.Buffer
	if err := hubbroker.WriteMosquittoPasswd(&pw, []hubbroker.Cred{{User: user, Password: pass}}); err != nil {
		t.Fatal(err)
	}
	if err := hubbroker.WriteMosquittoACL(&acl, wire.DefaultPrefix, nil, nil, user); err != nil {
		t.Fatal(err)
	}
	return mosquittotest.Start(t, what, mosquittotest.Files{Passwd: pw.Bytes(), ACL: acl.Bytes()}, user, pass)
}
