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
	sub   bool // subscribe to topic; otherwise publish on it
	topic string
	allow bool
}

var aclCases = []aclCase{
	{"device subscribes own subtree", userDevA, true, "dl/v1/dev/dev-a/#", true},
	{"device subscribes own desired", userDevA, true, "dl/v1/dev/dev-a/desired", true},
	{"device subscribes own chunk", userDevA, true, "dl/v1/dev/dev-a/chunk", true},
	{"device subscribes other device", userDevA, true, "dl/v1/dev/dev-b/#", false},
	{"device subscribes other desired", userDevA, true, "dl/v1/dev/dev-b/desired", false},
	{"device wildcard across devices", userDevA, true, "dl/v1/dev/+/status", false},
	{"device subscribes whole prefix", userDevA, true, "dl/v1/#", false},
	{"device subscribes everything", userDevA, true, "#", false},
	{"device subscribes fleet", userDevA, true, "dl/v1/fleet/rollouts/r1", false},
	{"viewer subscribes prefix", userViewer, true, "dl/v1/#", true},
	{"viewer subscribes device status", userViewer, true, "dl/v1/dev/dev-a/status", true},
	{"viewer subscribes outside prefix", userViewer, true, "other/#", false},
	{"hub subscribes everything", userHub, true, "#", true},

	{"device publishes own status", userDevA, false, "dl/v1/dev/dev-a/status", true},
	{"device publishes own heartbeat", userDevA, false, "dl/v1/dev/dev-a/heartbeat", true},
	{"device publishes own drift feature", userDevA, false, "dl/v1/dev/dev-a/drift/temp", true},
	{"device publishes own fetch", userDevA, false, "dl/v1/dev/dev-a/fetch", true},
	{"device publishes own reported", userDevA, false, "dl/v1/dev/dev-a/reported", true},
	{"device publishes own desired", userDevA, false, "dl/v1/dev/dev-a/desired", false},
	{"device publishes own chunk", userDevA, false, "dl/v1/dev/dev-a/chunk", false},
	{"device publishes other status", userDevA, false, "dl/v1/dev/dev-b/status", false},
	{"device publishes other desired", userDevA, false, "dl/v1/dev/dev-b/desired", false},
	{"device publishes fleet", userDevA, false, "dl/v1/fleet/drift/model-x", false},
	{"viewer publishes device status", userViewer, false, "dl/v1/dev/dev-a/status", false},
	{"viewer publishes fleet", userViewer, false, "dl/v1/fleet/rollouts/r1", false},
	{"hub publishes desired", userHub, false, "dl/v1/dev/dev-a/desired", true},
	{"hub publishes chunk", userHub, false, "dl/v1/dev/dev-b/chunk", true},
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

// runACLSuite runs aclCases and the connect checks against the broker at url.
//
// A publish is judged by an observer (the hub user, subscribed to dl/v1/#): the actor publishes
// at QoS 0 (a refused QoS 1 publish makes mochi drop a 3.1.1 client), completes a SUBACK round
// trip so the broker has routed that publish, and then the observer publishes a fence to itself.
// Deliveries to one subscriber keep their order, so if the actor's message is not in the
// observer's stream before the fence, the broker refused it.
func runACLSuite(t *testing.T, url string) {
	observer := mustConnect(t, clientOpts(url, "observer", userHub))
	rec := &recorder{}
	if code := subscribe(t, observer, "dl/v1/#", 0, rec.handle); code == 0x80 {
		t.Fatalf("observer subscription refused")
	}
	actors := map[string]paho.Client{}
	actor := func(t *testing.T, user string) paho.Client {
		if c, ok := actors[user]; ok && c.IsConnectionOpen() {
			return c
		}
		c := mustConnect(t, clientOpts(url, "actor-"+user, user))
		actors[user] = c
		return c
	}

	for i, tc := range aclCases {
		t.Run(tc.name, func(t *testing.T) {
			c := actor(t, tc.user)
			if tc.sub {
				code := subscribe(t, c, tc.topic, 1, func(paho.Client, paho.Message) {})
				if got := code != 0x80; got != tc.allow {
					t.Fatalf("%s subscribe %s: granted %#x, want allowed=%v", tc.user, tc.topic, code, tc.allow)
				}
				return
			}
			payload := []byte(fmt.Sprintf("case-%d", i))
			publish(t, c, tc.topic, 0, false, payload)
			if code := subscribe(t, c, syncFilter(tc.user), 0, func(paho.Client, paho.Message) {}); code == 0x80 {
				t.Fatalf("sync subscription of %s refused", tc.user)
			}
			fence := []byte(fmt.Sprintf("fence-%d", i))
			publish(t, observer, "dl/v1/fence", 1, false, fence)
			rec.wait(t, "dl/v1/fence", fence)
			_, got := rec.find(tc.topic, payload)
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
			opts := clientOpts(url, "refused-"+c.user, c.user).SetPassword(c.pass)
			if _, err := connect(t, opts); err == nil {
				t.Errorf("%s: connect accepted", c.name)
			} else {
				t.Logf("%s: refused: %v", c.name, err)
			}
		}
	})
}
