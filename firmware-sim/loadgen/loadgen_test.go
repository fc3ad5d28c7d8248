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

	"github.com/driftline/driftline/firmware-sim/loadgen"
	hubbroker "github.com/driftline/driftline/hub/broker"
	"github.com/driftline/driftline/hub/broker/mosquittotest"
	"github.com/driftline/driftline/hub/node/nodetest"
	"github.com/driftline/driftline/internal/testhelp"
	"github.com/driftline/driftline/shared/wire"
)

// TestLoadToolRollsOut runs the load tool for 200 devices over three connections against a
// real hub on a real Mosquitto (rendered ACL and passwords, the load users of WriteLoadACL), rolls
// a 600 KiB model (three chunks) out in waves [1, 10, 100] %, and checks that the rollout
// completes with every device active, that the devices' payloads verified, that the chunks
// came on the shared topic (not once per device) and that validation reports were acknowledged.
// Without mosquitto it skips loudly.
func TestLoadToolRollsOut(t *testing.T) {
	const n = 200
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
	b := mosquittotest.Start(t, "the load tool test", mosquittotest.Files{Passwd: pw.Bytes(), ACL: acl.Bytes()}, hubUser, hubPass)
	u, err := url.Parse(b.URL())
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(hubUser, hubPass)
	h := nodetest.Start(t, nodetest.Brokers(u.String()))

	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("load-%04d", i)
		h.Enroll(ids[i], map[string]string{"fleet": "load"})
	}
	art := make([]byte, 600<<10)
	_, _ = rand.Read(art)
	v, _ := h.PushModel("loadm", art, "", true)

	sim, err := loadgen.New(loadgen.Config{Broker: b.URL(), Conns: conns, Devices: ids, Root: []byte(h.Root()),
		Heartbeat: 2 * time.Second, Window: 3 * time.Second, VerifyEvery: 7, Logger: testhelp.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sim.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	testhelp.WaitFor(t, time.Minute, "every device online at the hub", func() bool {
		var page struct {
			Items []struct {
				Online bool `json:"online"`
			} `json:"items"`
		}
		h.Call(http.MethodGet, "/api/v1/devices?limit=1000", nil, http.StatusOK, &page)
		on := 0
		for _, d := range page.Items {
			if d.Online {
				on++
			}
		}
		return on == n
	})

	var ro struct {
		ID      string         `json:"id"`
		State   string         `json:"state"`
		Devices map[string]int `json:"devices"`
	}
	h.Call(http.MethodPost, "/api/v1/rollouts", map[string]any{"model": "loadm", "version": v, "selector": "fleet=load",
		"waves": []float64{1, 10, 100}, "bake_seconds": 1, "device_timeout_seconds": 120}, http.StatusCreated, &ro)
	testhelp.WaitFor(t, 3*time.Minute, "the rollout to end", func() bool {
		h.Call(http.MethodGet, "/api/v1/rollouts/"+ro.ID, nil, http.StatusOK, &ro)
		return ro.State != "running"
	})
	if ro.State != "completed" || ro.Devices["active"] != n {
		t.Fatalf("rollout %s %v, want completed with %d active", ro.State, ro.Devices, n)
	}
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
