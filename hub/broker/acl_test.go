package broker

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/driftline/driftline/internal/testhelp"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestRulesAllow(t *testing.T) {
	r, err := newRules("")
	if err != nil {
		t.Fatal(err)
	}
	dev := Principal{Kind: Device, ID: "d1"}
	viewer := Principal{Kind: Viewer, ID: "grafana"}
	hub := Principal{Kind: Hub, ID: "hub"}
	admin := Principal{Kind: Admin, ID: "admin"}
	cases := []struct {
		p     Principal
		topic string
		write bool
		want  bool
	}{
		{dev, "dl/v1/dev/d1/status", true, true},
		{dev, "dl/v1/dev/d1/drift/temp", true, true},
		{dev, "dl/v1/dev/d1/desired", true, false},
		{dev, "dl/v1/dev/d1/desired/x", true, false},
		{dev, "dl/v1/dev/d1/chunk", true, false},
		{dev, "dl/v1/dev/d1/desired", false, true},
		{dev, "dl/v1/dev/d1/chunk", false, true},
		{dev, "dl/v1/dev/d1/#", false, true},
		{dev, "dl/v1/dev/d1/+", false, true},
		{dev, "dl/v1/dev/d1", false, false},
		{dev, "dl/v1/dev/d1/", false, false},
		{dev, "dl/v1/dev/d10/status", false, false},
		{dev, "dl/v1/dev/d/status", false, false},
		{dev, "dl/v1/dev/+/status", false, false},
		{dev, "dl/v1/dev/#", false, false},
		{dev, "dl/v1/#", false, false},
		{dev, "#", false, false},
		{dev, "$share/g/dl/v1/dev/d1/#", false, false},
		{dev, "dl/v2/dev/d1/status", true, false},
		{viewer, "dl/v1/#", false, true},
		{viewer, "dl/v1/dev/d1/desired", false, true},
		{viewer, "dl/v1/dev/d1/status", true, false},
		{viewer, "dl/v1", false, false},
		{viewer, "dl/v1/", false, false},
		{viewer, "dl/v10/x", false, false},
		{viewer, "#", false, false},
		{hub, "anything/at/all", true, true},
		{hub, "#", false, true},
		{admin, "#", false, true},
		{admin, "dl/v1/dev/d1/desired", false, true},
		{admin, "dl/v1/dev/d1/status", true, true},
		{admin, "dl/v1/fleet/rollouts/r1", true, true},
		{admin, "dl/v1/dev/d1/desired", true, false},
		{admin, "dl/v1/dev/d1/chunk", true, false},
		{admin, "dl/v1/dev/d1/desired/x", true, false},
		{Principal{}, "dl/v1/dev/d1/status", false, false},
	}
	for _, c := range cases {
		if got := r.allow(c.p, c.topic, c.write); got != c.want {
			t.Errorf("allow(%s, %q, write=%v) = %v, want %v", c.p, c.topic, c.write, got, c.want)
		}
	}
}

func TestRulesCustomPrefix(t *testing.T) {
	r, err := newRules("acme/driftline/v1")
	if err != nil {
		t.Fatal(err)
	}
	d := Principal{Kind: Device, ID: "x"}
	if !r.allow(d, "acme/driftline/v1/dev/x/status", true) || r.allow(d, "dl/v1/dev/x/status", true) {
		t.Fatal("custom prefix not applied")
	}
}

func TestValidPrincipal(t *testing.T) {
	cases := []struct {
		p    Principal
		want bool
	}{
		{Principal{Device, "edge-01"}, true},
		{Principal{Device, ""}, false},
		{Principal{Device, "+"}, false},
		{Principal{Device, "#"}, false},
		{Principal{Device, "a/b"}, false},
		{Principal{Device, "a\x00"}, false},
		{Principal{Device, "\xff"}, false},
		{Principal{Device, strings.Repeat("a", maxIDLen+1)}, false},
		{Principal{Device, "a:b"}, false},     // ':' separates a device's client-id suffix
		{Principal{Device, "@viewer"}, false}, // '@' starts the token client-id namespaces
		{Principal{Viewer, ""}, false},
		{Principal{Viewer, "t:1"}, false},
		{Principal{Viewer, "3f2a9c1b"}, true},
		{Principal{Hub, "hub"}, true},
		{Principal{Unknown, "x"}, false},
	}
	for _, c := range cases {
		if got := validPrincipal(c.p); got != c.want {
			t.Errorf("validPrincipal(%q) = %v, want %v", c.p, got, c.want)
		}
	}
}

func TestTopicKind(t *testing.T) {
	r, _ := newRules("")
	cases := map[string]string{
		"dl/v1/dev/d1/status":        "status",
		"dl/v1/dev/d1/heartbeat":     "heartbeat",
		"dl/v1/dev/d1/drift":         "drift",
		"dl/v1/dev/d1/drift/temp":    "drift_feature",
		"dl/v1/dev/d1/chunk":         "chunk",
		"dl/v1/dev/d1/status/x":      "other",
		"dl/v1/dev/d1/unknown":       "other",
		"dl/v1/dev/d1":               "other",
		"dl/v1/fleet/rollouts/r1":    "fleet_rollouts",
		"dl/v1/fleet/drift/model-x":  "fleet_drift",
		"dl/v1/fleet/other":          "other",
		"elsewhere":                  "other",
		"dl/v1/dev/d1/drift/":        "other",
		"dl/v1/dev/d1/reported":      "reported",
		"dl/v1/dev/d1/fetch":         "fetch",
		"dl/v1/dev/d1/profile":       "profile",
		"dl/v1/dev/d1/validation":    "validation",
		"dl/v1/dev/d1/data":          "data",
		"dl/v1/dev/d1/desired":       "desired",
		"dl/v1/dev/d1/heartbeat/1/2": "other",
	}
	for topic, want := range cases {
		if got := r.topicKind(topic); got != want {
			t.Errorf("topicKind(%q) = %q, want %q", topic, got, want)
		}
	}
}

// FuzzRules feeds arbitrary device ids and topics, as clients send them, to the rules: they must
// never panic, and never let a device reach outside its own subtree or publish desired/chunk,
// nor a viewer publish.
func FuzzRules(f *testing.F) {
	for _, s := range [][2]string{
		{"d1", "dl/v1/dev/d1/status"}, {"d1", "dl/v1/dev/d1/desired"}, {"d1", "dl/v1/dev/+/status"},
		{"d1", "dl/v1/dev/d1"}, {"d", "dl/v1/dev/d1/x"}, {"d1", "#"}, {"", ""}, {"d1", "dl/v1/dev/d1/chunk/x"},
		{"é", "dl/v1/dev/é/drift/t"}, {"d1", "dl/v1/dev/d1//"},
	} {
		f.Add(s[0], s[1], true)
		f.Add(s[0], s[1], false)
	}
	r, _ := newRules("")
	f.Fuzz(func(t *testing.T, id, topic string, write bool) {
		dev := Principal{Kind: Device, ID: id}
		ok := r.allow(dev, topic, write)
		_ = r.topicKind(topic)
		if ok {
			own := "dl/v1/dev/" + id + "/"
			if !strings.HasPrefix(topic, own) || len(topic) == len(own) {
				t.Fatalf("device %q allowed %q outside its subtree", id, topic)
			}
			kind, _, _ := strings.Cut(topic[len(own):], "/")
			if write && (kind == "desired" || kind == "chunk") {
				t.Fatalf("device %q allowed to publish %q", id, topic)
			}
		}
		if r.allow(Principal{Kind: Viewer}, topic, true) {
			t.Fatalf("viewer allowed to publish %q", topic)
		}
		if r.allow(Principal{Kind: Viewer}, topic, false) && !strings.HasPrefix(topic, "dl/v1/") {
			t.Fatalf("viewer allowed to read %q", topic)
		}
	})
}

// revokingAuth accepts a device, but a Revoke of that device lands while the first
// authentication is in flight (as when the hub revokes concurrently with a connect).
type revokingAuth struct {
	auth  *tableAuth
	hook  *aclHook
	calls int
}

func (a *revokingAuth) Authenticate(user string, pw []byte) (Principal, error) {
	a.calls++
	p, err := a.auth.Authenticate(user, pw)
	if a.calls == 1 {
		a.auth.revoke(user)
		a.hook.revoke(Principal{Kind: Device, ID: user})
	}
	return p, err
}

func TestConnectOverlappingRevokeIsAuthenticatedAgain(t *testing.T) {
	m, _ := newMetrics(nil)
	r, _ := newRules("")
	ra := &revokingAuth{auth: newTableAuth()}
	h := newACLHook(r, ra, m, testhelp.Logger(t, slog.LevelInfo))
	ra.hook = h

	srv := mqtt.New(&mqtt.Options{Logger: testhelp.Logger(t, slog.LevelInfo)})
	cl := srv.NewClient(nil, "tcp", userDevA, false)
	pk := packets.Packet{Connect: packets.ConnectParams{Username: []byte(userDevA), Password: []byte(testCreds[userDevA])}}
	if h.OnConnectAuthenticate(cl, pk) {
		t.Fatal("a connect whose authentication overlapped Revoke was accepted")
	}
	if ra.calls != 2 {
		t.Fatalf("Authenticate called %d times, want 2", ra.calls)
	}
	if h.OnACLCheck(cl, "dl/v1/dev/dev-a/status", true) {
		t.Fatal("refused client passes the ACL")
	}
	if n := testutil.ToFloat64(m.rejected.WithLabelValues(reasonAuth)); n != 1 {
		t.Fatalf("rejected{auth} = %v, want 1", n)
	}
}

func TestClientIDAllowed(t *testing.T) {
	dev, view, hub := Principal{Device, "d1"}, Principal{Viewer, "t1"}, Principal{Hub, "t2"}
	cases := []struct {
		p    Principal
		id   string
		want bool
	}{
		{dev, "d1", true},
		{dev, "d1:sim", true},
		{dev, "d1:", false},
		{dev, "d10", false},
		{dev, "d1-sim", false},
		{dev, "d2", false},
		{dev, "@viewer:t1", false},
		{view, "@viewer:t1", true},
		{view, "@viewer:t1:grafana", true},
		{view, "@viewer:t10", false},
		{view, "t1", false},
		{view, "d1", false},
		{view, "@admin:t1", false},
		{hub, "@admin:t2", true},
		{hub, "@admin:t2:x", true},
		{hub, "d1", false},
		{Principal{Unknown, "x"}, "x", false},
	}
	for _, c := range cases {
		if got := ClientIDAllowed(c.p, c.id); got != c.want {
			t.Errorf("ClientIDAllowed(%v, %q) = %v, want %v", c.p, c.id, got, c.want)
		}
	}
}
