package loadgen_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/driftline/driftline/firmware-sim/hubpage"
	"github.com/driftline/driftline/firmware-sim/loadgen"
	hubbroker "github.com/driftline/driftline/hub/broker"
	"github.com/driftline/driftline/hub/broker/mosquittotest"
	"github.com/driftline/driftline/hub/node"
	"github.com/driftline/driftline/hub/node/nodetest"
	"github.com/driftline/driftline/hub/protocol"
	"github.com/driftline/driftline/internal/testhelp"
	"github.com/driftline/driftline/shared/wire"
)

// loadHub is a real hub on a real Mosquitto (rendered ACL and passwords, the load users of
// WriteLoadACL) with n devices enrolled (labels fleet=load), for the load tool.
type loadHub struct {
	broker string
	conns  []loadgen.Conn
	hub    *nodetest.Hub
	ids    []string
}

func startLoadHub(t *testing.T, what string, n int, opts ...nodetest.Option) *loadHub {
	t.Helper()
	const hubUser, hubPass = "driftline-hub", "hub-secret"
	users := []string{"loadgen-0", "loadgen-1", "loadgen-2"}
	var pw, acl bytes.Buffer
	creds := []hubbroker.Cred{{User: hubUser, Password: hubPass}}
	var conns []loadgen.Conn
	for i, u := range users {
		p := fmt.Sprintf("load-secret-%d", i)
		creds = append(creds, hubbroker.Cred{User: u, Password: p})
		conns = append(conns, loadgen.Conn{User: u, Password: p})
	}
	if err := hubbroker.WriteMosquittoPasswd(&pw, creds); err != nil {
		t.Fatal(err)
	}
	if err := hubbroker.WriteMosquittoACL(&acl, wire.DefaultPrefix, nil, nil, hubUser); err != nil {
		t.Fatal(err)
	}
	if err := loadgen.WriteLoadACL(&acl, wire.Default(), users); err != nil {
		t.Fatal(err)
	}
	b := mosquittotest.Start(t, what, mosquittotest.Files{Passwd: pw.Bytes(), ACL: acl.Bytes()}, hubUser, hubPass)
	u, err := url.Parse(b.URL())
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(hubUser, hubPass)
	h := nodetest.Start(t, append([]nodetest.Option{nodetest.Brokers(u.String())}, opts...)...)
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("load-%04d", i)
		h.Enroll(ids[i], map[string]string{"fleet": "load"})
	}
	return &loadHub{broker: b.URL(), conns: conns, hub: h, ids: ids}
}

// run starts the load tool with cfg (broker, connections, devices and root filled in) until
// the test ends.
func (l *loadHub) run(t *testing.T, cfg loadgen.Config) *loadgen.Sim {
	t.Helper()
	cfg.Broker, cfg.Conns, cfg.Devices, cfg.Root, cfg.Logger = l.broker, l.conns, l.ids, []byte(l.hub.Root()), testhelp.Logger(t)
	sim, err := loadgen.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sim.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	testhelp.WaitFor(t, time.Minute, "every device online at the hub", func() bool {
		var page struct {
			Items []struct {
				Online bool `json:"online"`
			} `json:"items"`
		}
		l.hub.Call(http.MethodGet, "/api/v1/devices?limit=1000", nil, http.StatusOK, &page)
		on := 0
		for _, d := range page.Items {
			if d.Online {
				on++
			}
		}
		return on == len(l.ids)
	})
	return sim
}

// rollOut rolls model@v out to every device in waves and waits for the rollout to complete
// with every device active.
func (l *loadHub) rollOut(t *testing.T, model string, v int, waves []float64) {
	t.Helper()
	var ro struct {
		ID      string         `json:"id"`
		State   string         `json:"state"`
		Devices map[string]int `json:"devices"`
	}
	l.hub.Call(http.MethodPost, "/api/v1/rollouts", map[string]any{"model": model, "version": v, "selector": "fleet=load",
		"waves": waves, "bake_seconds": 1, "device_timeout_seconds": 120}, http.StatusCreated, &ro)
	testhelp.WaitFor(t, 3*time.Minute, "the rollout to end", func() bool {
		l.hub.Call(http.MethodGet, "/api/v1/rollouts/"+ro.ID, nil, http.StatusOK, &ro)
		return ro.State != "running"
	})
	if ro.State != "completed" || ro.Devices["active"] != len(l.ids) {
		t.Fatalf("rollout %s %v, want completed with %d active", ro.State, ro.Devices, len(l.ids))
	}
}

// egress returns the hub's chunk egress bytes on path (protocol.EgressShared, EgressDevice).
func (l *loadHub) egress(t *testing.T, path string) float64 {
	t.Helper()
	code, raw := l.hub.Request(http.MethodGet, "/metrics", nil)
	if code != http.StatusOK {
		t.Fatalf("GET /metrics: %d", code)
	}
	n, _, err := hubpage.MetricSamples(bytes.NewReader(raw), protocol.MetricChunkEgressBytes, `path="`+path+`"`)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestLoadToolRollsOut runs the load tool for 200 devices over three connections against a
// real hub on a real Mosquitto (rendered ACL and passwords, the load users of WriteLoadACL), rolls
// a 600 KiB model (three chunks) out in waves [1, 10, 100] %, and checks that the rollout
// completes with every device active, that the devices' payloads verified, that the chunks
// came on the shared topic (not once per device) and that validation reports were acknowledged.
// Without mosquitto it skips loudly.
func TestLoadToolRollsOut(t *testing.T) {
	const n = 200
	l := startLoadHub(t, "the load tool test", n)
	h := l.hub
	art := make([]byte, 600<<10)
	_, _ = rand.Read(art)
	v, _ := h.PushModel("loadm", art, "", true)

	sim := l.run(t, loadgen.Config{Heartbeat: 2 * time.Second, Window: 3 * time.Second, VerifyEvery: 7})
	l.rollOut(t, "loadm", v, []float64{1, 10, 100})
	testhelp.WaitFor(t, 30*time.Second, "validation reports acknowledged", func() bool { return sim.Stats().Acks > 0 })
	st := sim.Stats()
	t.Logf("load tool: %+v", st)
	if st.BadPayloads != 0 || st.Verified == 0 || st.Desired < n {
		t.Fatalf("payloads: %d bad, %d verified, %d desired for %d devices", st.BadPayloads, st.Verified, st.Desired, n)
	}
	if got := st.Running[wire.VersionRef("loadm", v)]; got != n {
		t.Fatalf("%d devices run loadm@%d, want %d", got, v, n)
	}
	// Three chunks per wave on the shared topic, and a few again for late listeners: far fewer
	// than three per device.
	if st.SharedFrames == 0 || st.SharedFrames >= 3*n/2 {
		t.Fatalf("%d shared chunk frames for %d devices", st.SharedFrames, n)
	}
}

// TestLoadToolWaitsForSharedChunksLikeAnAgent: the hub holds every shared publish 2.5 s after
// the last device asked (SharedChunkDelay), longer than the devices' 2 s request timeout but
// within what an agent waits for a request naming the shared topic (wire.SharedDeadline: 4 s).
// Agents would all get the chunks from the shared publish; so must the load tool's 200
// simulated devices: no fetch asked again per device, no chunk served per device. A load tool
// that asks per device after one timeout (as it did) makes every device a straggler here, and
// at 100,000 devices put hundreds of model copies on the hub's per-device path
// (docs/benchmarks.md, run d).
func TestLoadToolWaitsForSharedChunksLikeAnAgent(t *testing.T) {
	const n = 200
	hold := func(c *node.Config) { c.SharedChunkDelay = 2500 * time.Millisecond }
	l := startLoadHub(t, "the load tool's fetch policy test", n, hold)
	art := make([]byte, 600<<10)
	_, _ = rand.Read(art)
	v, _ := l.hub.PushModel("waitm", art, "", true)
	sim := l.run(t, loadgen.Config{Heartbeat: 2 * time.Second, Window: -1, FetchTimeout: 2 * time.Second})
	l.rollOut(t, "waitm", v, []float64{100})
	st := sim.Stats()
	shared, device := l.egress(t, protocol.EgressShared), l.egress(t, protocol.EgressDevice)
	t.Logf("load tool: %+v; hub chunk egress: shared %.0f B, per device %.0f B (model %d B)", st, shared, device, len(art))
	if st.BadPayloads != 0 || st.Running[wire.VersionRef("waitm", v)] != n {
		t.Fatalf("%d bad payloads, %d devices run waitm@%d; want 0 and %d", st.BadPayloads, st.Running[wire.VersionRef("waitm", v)], v, n)
	}
	if shared == 0 {
		t.Fatal("no chunk went out on the shared topic")
	}
	// A straggler or two on a loaded machine, not one per device.
	if device > 2*float64(len(art)) || st.Retries > 4 {
		t.Fatalf("hub sent %.0f B per device (%.1f × the model) after %d fetches asked again per device; want about none: every device listened for the shared publish", device, device/float64(len(art)), st.Retries)
	}
}
