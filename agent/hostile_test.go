package agent_test

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/driftline/driftline/agent"
	hubbroker "github.com/driftline/driftline/hub/broker"
	"github.com/driftline/driftline/hub/broker/mosquittotest"
	"github.com/driftline/driftline/hub/node"
	"github.com/driftline/driftline/shared/wire"
)

// TestHostileBroker runs the hub on a Mosquitto whose ACL lets every client publish anything
// (the broker is the attacker's): a device running v2 is sent a forged desired state that
// would deactivate everything, a replay of its own real desired state for v1, another
// device's desired state (as it is, and relabelled), and its own desired state once expired.
// Every one is refused and v2 keeps running; the hub's next real desired state (v3) still
// applies; and when the hub goes silent, the device reports the freeze and keeps running v3.
// Before desired states were signed, the forged one deactivated v2, the replay rolled the
// device back to v1, and the forged rev froze it for good.
func TestHostileBroker(t *testing.T) {
	const hubUser, hubPass, evilUser, evilPass = "driftline-hub", "hub-secret", "mallory", "mallory-secret"
	files := func(devices map[string]string) mosquittotest.Files {
		creds := []hubbroker.Cred{{User: hubUser, Password: hubPass}, {User: evilUser, Password: evilPass}}
		for id, tok := range devices {
			creds = append(creds, hubbroker.Cred{User: id, Password: tok})
		}
		var pw bytes.Buffer
		if err := hubbroker.WriteMosquittoPasswd(&pw, creds); err != nil {
			t.Fatal(err)
		}
		return mosquittotest.Files{Passwd: pw.Bytes(), ACL: []byte("pattern readwrite #\n")} // no access control at all
	}
	mq := mosquittotest.Start(t, "the hostile-broker test", files(nil), hubUser, hubPass)
	const ttl = 4 * time.Second
	h := startHubWith(t, func(c *node.Config) { c.DesiredTTL = ttl }, strings.Replace(mq.URL(), "tcp://", "tcp://"+hubUser+":"+hubPass+"@", 1))
	tok, other := h.enroll("dev-h"), h.enroll("dev-other")
	mq.Reload(files(map[string]string{"dev-h": tok, "dev-other": other}))
	mq.WaitAccepts("dev-h", tok)

	// Mallory watches every desired state on the broker.
	topics := wire.Default()
	var mu sync.Mutex
	seen := map[string][][]byte{} // topic -> payloads, oldest first
	evil := paho.NewClient(paho.NewClientOptions().AddBroker(mq.URL()).SetClientID("mallory").
		SetUsername(evilUser).SetPassword(evilPass))
	if tk := evil.Connect(); !tk.WaitTimeout(10*time.Second) || tk.Error() != nil {
		t.Fatalf("mallory connect: %v", tk.Error())
	}
	defer evil.Disconnect(0)
	if tk := evil.Subscribe(wire.DefaultPrefix+"/dev/+/desired", 1, func(_ paho.Client, m paho.Message) {
		mu.Lock()
		seen[m.Topic()] = append(seen[m.Topic()], append([]byte(nil), m.Payload()...))
		mu.Unlock()
	}); !tk.WaitTimeout(10*time.Second) || tk.Error() != nil {
		t.Fatalf("mallory subscribe: %v", tk.Error())
	}
	captured := func(id string, rev uint64) []byte {
		t.Helper()
		var out []byte
		waitFor(t, 10*time.Second, "a captured desired state", func() bool {
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
	publish := func(topic string, p []byte) {
		t.Helper()
		if tk := evil.Publish(topic, 1, true, p); !tk.WaitTimeout(10*time.Second) || tk.Error() != nil {
			t.Fatalf("mallory publish: %v", tk.Error())
		}
	}

	v1, _ := h.pushModel("hm", randomBytes(31, 64<<10))
	v2, _ := h.pushModel("hm", randomBytes(32, 64<<10))
	cfg := agentConfig(t, "dev-h", tok, []string{mq.URL()}, nil)
	cfg.TrustedRoot = h.root()
	a := startAgent(t, cfg, agent.Options{})
	waitFor(t, 20*time.Second, "agent connected", a.Connected)
	h.assign("dev-h", "hm", v1)
	waitActive(t, h, "dev-h", "hm", v1, "active")
	realV1 := captured("dev-h", 1)
	h.assign("dev-h", "hm", v2)
	waitActive(t, h, "dev-h", "hm", v2, "active")
	h.assign("dev-other", "hm", v1)
	foreign := captured("dev-other", 1)

	rejected := func(reason string) float64 { return metric(t, a.reg, agent.MetricRejected, "reason", reason) }
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
			waitFor(t, 2*ttl, "the captured desired state to expire", func() bool { return time.Now().UnixMilli() > d.Expires })
			return p
		}},
	}
	for _, at := range attacks {
		t.Run(at.name, func(t *testing.T) {
			before := rejected(at.reason)
			publish(topics.Desired("dev-h"), at.payload())
			waitFor(t, 10*time.Second, "refused as "+at.reason, func() bool { return rejected(at.reason) > before })
			if _, models := h.device("dev-h"); models["hm"].Active == nil || *models["hm"].Active != v2 {
				t.Fatalf("after the attack the device runs %+v, want v%d", models["hm"], v2)
			}
			if got, err := a.ActiveModels(); err != nil || len(got) != 1 || got[0].Version != v2 {
				t.Fatalf("active models %+v (%v), want hm@%d only", got, err, v2)
			}
		})
	}

	// The hub's next real desired state still applies.
	v3, _ := h.pushModel("hm", randomBytes(33, 64<<10))
	h.assign("dev-h", "hm", v3)
	waitActive(t, h, "dev-h", "hm", v3, "active")

	// Freeze: the hub goes silent (and Mallory keeps its last message retained). Once the last
	// valid desired state expires the device says so, and keeps running v3.
	h.n.Close()
	waitFor(t, 3*ttl, "the device to report a frozen desired feed", func() bool {
		return metric(t, a.reg, agent.MetricDesiredStale) == 1
	})
	if got, err := a.ActiveModels(); err != nil || len(got) != 1 || got[0].Version != v3 {
		t.Fatalf("active models after the freeze %+v (%v), want hm@%d", got, err, v3)
	}
}
