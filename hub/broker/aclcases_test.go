package broker

import (
	"fmt"
	"testing"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// aclCase is one access decision that the embedded broker and Mosquitto (with the files
// WriteMosquittoACL and WriteMosquittoPasswd render) must both make.
type aclCase struct {
	name  string
	user  string
	sub   bool   // subscribe to topic; otherwise publish on it
	topic string // topic name, or filter for a subscription
	probe string // for a subscription: a topic name the filter matches ("": the filter itself)
	allow bool
}

var aclCases = []aclCase{
	{"device subscribes own subtree", userDevA, true, "dl/v1/dev/dev-a/#", "dl/v1/dev/dev-a/desired", true},
	{"device subscribes own desired", userDevA, true, "dl/v1/dev/dev-a/desired", "", true},
	{"device subscribes own chunk", userDevA, true, "dl/v1/dev/dev-a/chunk", "", true},
	{"device subscribes other device", userDevA, true, "dl/v1/dev/dev-b/#", "dl/v1/dev/dev-b/status", false},
	{"device subscribes other desired", userDevA, true, "dl/v1/dev/dev-b/desired", "", false},
	{"device wildcard across devices", userDevA, true, "dl/v1/dev/+/status", "dl/v1/dev/dev-b/status", false},
	{"device subscribes whole prefix", userDevA, true, "dl/v1/#", "dl/v1/fleet/drift/m", false},
	{"device subscribes everything", userDevA, true, "#", "dl/v1/dev/dev-b/desired", false},
	{"device subscribes fleet", userDevA, true, "dl/v1/fleet/rollouts/r1", "", false},
	{"device subscribes its model's shared chunks", userDevA, true, "dl/v1/model/model-a/chunk", "", true},
	{"device subscribes another model's shared chunks", userDevA, true, "dl/v1/model/model-b/chunk", "", false},
	{"other device subscribes the model's shared chunks", userDevB, true, "dl/v1/model/model-a/chunk", "", false},
	{"device subscribes every model's shared chunks", userDevA, true, "dl/v1/model/+/chunk", "dl/v1/model/model-b/chunk", false},
	{"viewer subscribes prefix", userViewer, true, "dl/v1/#", "dl/v1/dev/dev-b/heartbeat", true},
	{"viewer subscribes device status", userViewer, true, "dl/v1/dev/dev-a/status", "", true},
	{"viewer subscribes outside prefix", userViewer, true, "other/#", "other/x", false},
	{"hub subscribes everything", userHub, true, "#", "other/y", true},

	{"device publishes own status", userDevA, false, "dl/v1/dev/dev-a/status", "", true},
	{"device publishes own heartbeat", userDevA, false, "dl/v1/dev/dev-a/heartbeat", "", true},
	{"device publishes own drift feature", userDevA, false, "dl/v1/dev/dev-a/drift/temp", "", true},
	{"device publishes own fetch", userDevA, false, "dl/v1/dev/dev-a/fetch", "", true},
	{"device publishes own reported", userDevA, false, "dl/v1/dev/dev-a/reported", "", true},
	{"device publishes own desired", userDevA, false, "dl/v1/dev/dev-a/desired", "", false},
	{"device publishes own chunk", userDevA, false, "dl/v1/dev/dev-a/chunk", "", false},
	{"device publishes other status", userDevA, false, "dl/v1/dev/dev-b/status", "", false},
	{"device publishes other desired", userDevA, false, "dl/v1/dev/dev-b/desired", "", false},
	{"device publishes fleet", userDevA, false, "dl/v1/fleet/drift/model-x", "", false},
	{"viewer publishes device status", userViewer, false, "dl/v1/dev/dev-a/status", "", false},
	{"viewer publishes fleet", userViewer, false, "dl/v1/fleet/rollouts/r1", "", false},
	{"hub publishes desired", userHub, false, "dl/v1/dev/dev-a/desired", "", true},
	{"hub publishes chunk", userHub, false, "dl/v1/dev/dev-b/chunk", "", true},
	{"device publishes its model's shared chunks", userDevA, false, "dl/v1/model/model-a/chunk", "", false},
	{"hub publishes shared chunks", userHub, false, "dl/v1/model/model-a/chunk", "", true},
}

// syncFilter is a filter the user may subscribe to; a SUBACK on it proves that the broker has
// processed every packet the client sent before it.
func syncFilter(user string) string {
	switch user {
	case userDevA, userDevB:
		return "dl/v1/dev/" + user + "/sync"
	default:
		return "dl/v1/sync"
	}
}

// runACLSuite runs aclCases and the connect checks against the broker at url. strictSubscribe
// says the broker refuses a denied subscription in its SUBACK (0x80), as the embedded broker
// does; Mosquitto's acl_file grants every subscription and filters deliveries instead, so there
// a subscription is judged by what it delivers.
//
// Deliveries are judged with fences. Deliveries to one subscriber keep the order in which the
// broker routed them, and a broker handles one client's packets in order. For a publish, the actor
// publishes at QoS 0 (a refused QoS 1 publish makes mochi drop a 3.1.1 client), completes a SUBACK
// round trip so the broker has routed that publish, and then the observer (the hub user,
// subscribed to dl/v1/#) publishes a fence to itself: if the actor's message is not in the
// observer's stream before the fence, the broker refused it. For a subscription, the observer
// publishes a probe matching the filter and then a fence to the actor's own sync topic.
func runACLSuite(t *testing.T, url string, strictSubscribe bool) {
	observer := mustConnect(t, clientOpts(url, cid(userHub, "observer"), userHub))
	obs := &recorder{}
	if code := subscribe(t, observer, "dl/v1/#", 1, obs.handle); code == 0x80 {
		t.Fatalf("observer subscription refused")
	}
	type actorConn struct {
		c   paho.Client
		rec *recorder
	}
	// Actors live as long as the suite (connections made with the parent test's t): reconnecting
	// a client id at once after a clean disconnect races mochi's teardown of the old session,
	// which unsubscribes by client id.
	actors := map[string]actorConn{}
	actor := func(user string) actorConn {
		if a, ok := actors[user]; ok {
			if !a.c.IsConnectionOpen() {
				t.Fatalf("actor %s lost its connection", user)
			}
			return a
		}
		rec := &recorder{}
		c := mustConnect(t, clientOpts(url, cid(user, "actor"), user).SetDefaultPublishHandler(rec.handle))
		if code := subscribe(t, c, syncFilter(user), 1, rec.handle); code == 0x80 {
			t.Fatalf("sync subscription of %s refused", user)
		}
		actors[user] = actorConn{c, rec}
		return actors[user]
	}

	for i, tc := range aclCases {
		t.Run(tc.name, func(t *testing.T) {
			a := actor(tc.user)
			fence := []byte(fmt.Sprintf("fence-%d", i))
			var got bool
			if tc.sub {
				code := subscribe(t, a.c, tc.topic, 1, a.rec.handle)
				if strictSubscribe && (code != 0x80) != tc.allow {
					t.Fatalf("%s subscribe %s: SUBACK %#x, want allowed=%v", tc.user, tc.topic, code, tc.allow)
				}
				if code != 0x80 {
					probe, payload := tc.probe, []byte(fmt.Sprintf("probe-%d", i))
					if probe == "" {
						probe = tc.topic
					}
					publish(t, observer, probe, 1, false, payload)
					publish(t, observer, syncFilter(tc.user), 1, false, fence)
					a.rec.wait(t, syncFilter(tc.user), fence)
					_, got = a.rec.find(probe, payload)
				}
				if got != tc.allow {
					t.Fatalf("%s subscribe %s: SUBACK %#x, probe delivered=%v, want allowed=%v", tc.user, tc.topic, code, got, tc.allow)
				}
				return
			}
			payload := []byte(fmt.Sprintf("case-%d", i))
			publish(t, a.c, tc.topic, 0, false, payload)
			if code := subscribe(t, a.c, syncFilter(tc.user), 1, a.rec.handle); code == 0x80 {
				t.Fatalf("sync subscription of %s refused", tc.user)
			}
			publish(t, observer, "dl/v1/fence", 1, false, fence)
			obs.wait(t, "dl/v1/fence", fence)
			_, got = obs.find(tc.topic, payload)
			if got != tc.allow {
				t.Fatalf("%s publish %s: delivered=%v, want allowed=%v", tc.user, tc.topic, got, tc.allow)
			}
		})
	}

	t.Run("connect refusals", func(t *testing.T) {
		for _, c := range []struct{ name, user, pass string }{
			{"wrong token", userDevA, "not-the-token"},
			{"other device's token", userDevA, testCreds[userDevB]},
			{"unknown user", "dev-z", "whatever"},
			{"empty password", userViewer, ""},
		} {
			opts := clientOpts(url, cid(c.user, "refused"), c.user).SetPassword(c.pass)
			if _, err := connect(t, opts); err == nil {
				t.Errorf("%s: connect accepted", c.name)
			} else {
				t.Logf("%s: refused: %v", c.name, err)
			}
		}
	})
}
