package agent_test

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/driftline/driftline/agent"
	"github.com/driftline/driftline/agent/agenttest"
	hubbroker "github.com/driftline/driftline/hub/broker"
	"github.com/driftline/driftline/hub/broker/mosquittotest"
	"github.com/driftline/driftline/hub/node"
	"github.com/driftline/driftline/hub/node/nodetest"
	"github.com/driftline/driftline/internal/testhelp"
	"github.com/driftline/driftline/shared/wire"
)

// openBroker is a Mosquitto whose ACL lets every authenticated client publish and subscribe
// anything, with Mallory connected and recording every desired state published.
type openBroker struct {
	t    *testing.T
	mq   *mosquittotest.Broker
	evil paho.Client
	mu   sync.Mutex
	seen map[string][][]byte // topic -> desired payloads, oldest first
}

const (
	openHubUser, openHubPass   = "driftline-hub", "hub-secret"
	openEvilUser, openEvilPass = "mallory", "mallory-secret"
)

func startOpenBroker(t *testing.T) *openBroker {
	ob := &openBroker{t: t, seen: map[string][][]byte{}}
	ob.mq = mosquittotest.Start(t, "the hostile-broker tests", ob.files(nil), openHubUser, openHubPass)
	ob.evil = paho.NewClient(paho.NewClientOptions().AddBroker(ob.mq.URL()).SetClientID("mallory").
		SetUsername(openEvilUser).SetPassword(openEvilPass))
	if tk := ob.evil.Connect(); !tk.WaitTimeout(10*time.Second) || tk.Error() != nil {
		t.Fatalf("mallory connect: %v", tk.Error())
	}
	t.Cleanup(func() { ob.evil.Disconnect(0) })
	if tk := ob.evil.Subscribe(wire.DefaultPrefix+"/dev/+/desired", 1, func(_ paho.Client, m paho.Message) {
		ob.mu.Lock()
		ob.seen[m.Topic()] = append(ob.seen[m.Topic()], append([]byte(nil), m.Payload()...))
		ob.mu.Unlock()
	}); !tk.WaitTimeout(10*time.Second) || tk.Error() != nil {
		t.Fatalf("mallory subscribe: %v", tk.Error())
	}
	return ob
}

func (ob *openBroker) files(devices map[string]string) mosquittotest.Files {
	creds := []hubbroker.Cred{{User: openHubUser, Password: openHubPass}, {User: openEvilUser, Password: openEvilPass}}
	for id, tok := range devices {
		creds = append(creds, hubbroker.Cred{User: id, Password: tok})
	}
	var pw bytes.Buffer
	if err := hubbroker.WriteMosquittoPasswd(&pw, creds); err != nil {
		ob.t.Fatal(err)
	}
	return mosquittotest.Files{Passwd: pw.Bytes(), ACL: []byte("pattern readwrite #\n")} // no access control at all
}

// allow lets the devices (id -> token) log in.
func (ob *openBroker) allow(devices map[string]string) {
	ob.mq.Reload(ob.files(devices))
	for id, tok := range devices {
		ob.mq.WaitAccepts(id, tok)
	}
}

// hubURL is the broker URL with the hub's credentials.
func (ob *openBroker) hubURL() string {
	return strings.Replace(ob.mq.URL(), "tcp://", "tcp://"+openHubUser+":"+openHubPass+"@", 1)
}

// publish publishes p retained on topic as Mallory.
func (ob *openBroker) publish(topic string, p []byte) {
	ob.t.Helper()
	if tk := ob.evil.Publish(topic, 1, true, p); !tk.WaitTimeout(10*time.Second) || tk.Error() != nil {
		ob.t.Fatalf("mallory publish: %v", tk.Error())
	}
}

// TestHostileBroker runs the hub on a Mosquitto whose ACL lets every client publish anything
// (the broker is the attacker's): a device running v2 is sent a forged desired state that
// would deactivate everything, a replay of its own real desired state for v1, another
// device's desired state (as it is, and relabelled), and its own desired state once expired.
// Every one is refused and v2 keeps running; the hub's next real desired state (v3) still
// applies; and when the hub goes silent, the device reports the freeze and keeps running v3.
// Before desired states were signed, the forged one deactivated v2, the replay rolled the
// device back to v1, and the forged rev froze it for good.
func TestHostileBroker(t *testing.T) {
	ob := startOpenBroker(t)
	const ttl = 4 * time.Second
	h := nodetest.Start(t, func(c *node.Config) { c.DesiredTTL = ttl }, nodetest.Brokers(ob.hubURL()))
	tok, other := enroll(h, "dev-h"), enroll(h, "dev-other")
	ob.allow(map[string]string{"dev-h": tok, "dev-other": other})
	topics := wire.Default()
	mu, seen := &ob.mu, ob.seen
	captured := func(id string, rev uint64) []byte {
		t.Helper()
		var out []byte
		testhelp.WaitFor(t, 10*time.Second, "a captured desired state", func() bool {
			mu.Lock()
			defer mu.Unlock()
			for _, p := range seen[topics.Desired(id)] {
				if d, err := wire.DecodeDesired(p); err == nil && d.Rev == rev {
					out = p
					return true
				}
			}
			return false
		})
		return out
	}
	publish := ob.publish

	v1, _ := h.PushModel("hm", agenttest.RandomBytes(31, 64<<10), "", true)
	v2, _ := h.PushModel("hm", agenttest.RandomBytes(32, 64<<10), "", true)
	cfg := agenttest.Config(t, "dev-h", tok, []string{ob.mq.URL()}, nil)
	cfg.TrustedRoot = h.Root()
	a := agenttest.Start(t, cfg, agent.Options{})
	testhelp.WaitFor(t, 20*time.Second, "agent connected", a.Connected)
	assign(h, "dev-h", "hm", v1)
	waitActive(t, h, "dev-h", "hm", v1, "active")
	realV1 := captured("dev-h", 1)
	assign(h, "dev-h", "hm", v2)
	waitActive(t, h, "dev-h", "hm", v2, "active")
	assign(h, "dev-other", "hm", v1)
	foreign := captured("dev-other", 1)

	rejected := func(reason string) float64 { return agenttest.Metric(t, a.Reg, agent.MetricRejected, "reason", reason) }
	attacks := []struct {
		name, reason string
		payload      func() []byte
	}{
		{"forged max rev, no models", agent.ReasonUnsigned, func() []byte {
			return []byte(`{"device_id":"dev-h","ts":1,"rev":9007199254740991,"models":[]}`)
		}},
		{"replay of the device's own v1 desired", agent.ReasonReplayed, func() []byte { return realV1 }},
		{"another device's desired", agent.ReasonMalformedDesired, func() []byte { return foreign }},
		{"another device's desired relabelled", agent.ReasonBadSignature, func() []byte {
			return bytes.Replace(foreign, []byte(`"device_id":"dev-other"`), []byte(`"device_id":"dev-h"`), 1)
		}},
		{"its own desired, expired", agent.ReasonExpired, func() []byte {
			p := captured("dev-h", 2)
			d, _ := wire.DecodeDesired(p)
			testhelp.WaitFor(t, 2*ttl, "the captured desired state to expire", func() bool { return time.Now().UnixMilli() > d.Expires })
			return p
		}},
	}
	for _, at := range attacks {
		t.Run(at.name, func(t *testing.T) {
			before := rejected(at.reason)
			publish(topics.Desired("dev-h"), at.payload())
			testhelp.WaitFor(t, 10*time.Second, "refused as "+at.reason, func() bool { return rejected(at.reason) > before })
			if _, models := device(h, "dev-h"); models["hm"].Active == nil || *models["hm"].Active != v2 {
				t.Fatalf("after the attack the device runs %+v, want v%d", models["hm"], v2)
			}
			if got, err := a.ActiveModels(); err != nil || len(got) != 1 || got[0].Version != v2 {
				t.Fatalf("active models %+v (%v), want hm@%d only", got, err, v2)
			}
		})
	}

	// The hub's next real desired state still applies.
	v3, _ := h.PushModel("hm", agenttest.RandomBytes(33, 64<<10), "", true)
	assign(h, "dev-h", "hm", v3)
	waitActive(t, h, "dev-h", "hm", v3, "active")

	// Freeze: the hub goes silent (and Mallory keeps its last message retained). Once the last
	// valid desired state expires the device says so, in its metrics and its retained reported
	// state, and keeps running v3.
	reported := make(chan struct{})
	var once sync.Once
	if tk := ob.evil.Subscribe(topics.Reported("dev-h"), 1, func(_ paho.Client, m paho.Message) {
		if r, err := wire.DecodeReported(m.Payload()); err == nil && r.DesiredStale {
			once.Do(func() { close(reported) })
		}
	}); !tk.WaitTimeout(10*time.Second) || tk.Error() != nil {
		t.Fatalf("mallory subscribe: %v", tk.Error())
	}
	h.Close()
	testhelp.WaitFor(t, 3*ttl, "the device to report a frozen desired feed", func() bool {
		return agenttest.Metric(t, a.Reg, agent.MetricDesiredStale) == 1
	})
	select {
	case <-reported:
	case <-time.After(10 * time.Second):
		t.Fatal("the reported state never said desired_stale")
	}
	if got, err := a.ActiveModels(); err != nil || len(got) != 1 || got[0].Version != v3 {
		t.Fatalf("active models after the freeze %+v (%v), want hm@%d", got, err, v3)
	}
}
