package firmware_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/driftline/driftline/firmware-sim/fleet"
	"github.com/driftline/driftline/firmware-sim/sim"
	"github.com/driftline/driftline/hub/node/nodetest"
	"github.com/driftline/driftline/internal/hubproc"
	"github.com/driftline/driftline/internal/testhelp"
)

type hubDevice struct {
	ID       string `json:"id"`
	Online   bool   `json:"online"`
	Reported struct {
		Models map[string]struct {
			Active *int `json:"active"`
		} `json:"models"`
	} `json:"reported"`
}

func devices(h *nodetest.Hub) []hubDevice {
	var page struct{ Items []hubDevice }
	h.Call(http.MethodGet, "/api/v1/devices?limit=100", nil, http.StatusOK, &page)
	return page.Items
}

// TestFleet runs three real agents in one process against a real hub: they enrol, come
// online, take a pinned model version, and their pipelines check the scenario's rows. A second
// run with the same state dir keeps the identities and the installed model.
func TestFleet(t *testing.T) {
	h := nodetest.Start(t)
	stateDir := t.TempDir()
	s, err := sim.Parse([]byte("rate: 20\nfields:\n  - {name: x, dist: normal, mean: 1, stddev: 0.1}\n"), ".")
	if err != nil {
		t.Fatal(err)
	}
	out := &hubproc.Output{}
	cfg := fleet.Config{
		Devices: 3, Hub: h.URL(), Token: h.Token, Brokers: []string{h.MQTTURL()}, StateDir: stateDir,
		Scenario: s, Seed: 3, SummaryEvery: 200 * time.Millisecond, Out: out, Logger: testhelp.Logger(t),
		Heartbeat: time.Second,
	}
	ctx, cancel := context.WithCancel(context.Background())
	type result struct {
		s   fleet.Summary
		err error
	}
	done := make(chan result, 1)
	go func() {
		s, err := fleet.Run(ctx, cfg)
		done <- result{s, err}
	}()
	defer func() { cancel(); <-done }()

	testhelp.WaitFor(t, 20*time.Second, "3 fleet devices online", func() bool {
		n := 0
		for _, d := range devices(h) {
			if d.Online {
				n++
			}
		}
		return n == 3
	})
	art := make([]byte, 300<<10)
	rand.Read(art)
	var sample strings.Builder
	sample.WriteString("device_id,ts,x\n")
	for i := 0; i < 300; i++ {
		fmt.Fprintf(&sample, "d,%d,%.3f\n", i, 1+0.1*mrand.NormFloat64())
	}
	dsv := h.PushDataset("ds", `{"fields": [
		{"name": "device_id", "type": "string", "x-driftline": {"role": "label"}},
		{"name": "ts", "type": "integer", "x-driftline": {"role": "label"}},
		{"name": "x", "type": "number", "constraints": {"required": true}}]}`, sample.String())
	v, _ := h.PushModel("m", art, fmt.Sprintf(`{"format":"test","trained_on":[{"dataset":"ds","version":%d}]}`, dsv), true)
	for _, d := range devices(h) {
		h.Call(http.MethodPut, "/api/v1/devices/"+d.ID+"/models/m", map[string]any{"version": v}, http.StatusOK, nil)
	}
	testhelp.WaitFor(t, 30*time.Second, "model active on every agent", func() bool {
		n := 0
		for _, d := range devices(h) {
			if m, ok := d.Reported.Models["m"]; ok && m.Active != nil && *m.Active == v {
				n++
			}
		}
		return n == 3
	})
	cancel()
	r := <-done
	done <- r // for the deferred receive
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Logf("final: %s", r.s)
	if r.s.Devices != 3 || r.s.Versions["m@1"] != 3 || r.s.Rows == 0 {
		t.Fatalf("summary %+v", r.s)
	}
	for _, id := range []string{"fleet-00001", "fleet-00002", "fleet-00003"} {
		if _, err := os.Stat(filepath.Join(stateDir, "models", id, "m")); err != nil {
			t.Fatalf("model directory of %s: %v", id, err)
		}
	}
	if !bytes.Contains([]byte(out.String()), []byte("devices online 3/3")) {
		t.Fatalf("no live summary with every device online:\n%s", out.String())
	}
	credsBefore, err := os.ReadFile(filepath.Join(stateDir, fleet.CredentialsFile))
	if err != nil {
		t.Fatal(err)
	}

	// Again: the same identities (no new enrolment), the model still installed.
	cfg.Scenario, cfg.Duration = nil, 3*time.Second
	s2, err := fleet.Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	credsAfter, _ := os.ReadFile(filepath.Join(stateDir, fleet.CredentialsFile))
	if !bytes.Equal(credsBefore, credsAfter) || s2.Versions["m@1"] != 3 || s2.Online != 3 {
		t.Fatalf("second run: %+v, credentials changed: %v", s2, !bytes.Equal(credsBefore, credsAfter))
	}
	if n := len(devices(h)); n != 3 {
		t.Fatalf("%d devices on the hub after the second run", n)
	}
}

// TestFleetIdentityConflict refuses a device that exists on the hub without a kept token.
func TestFleetIdentityConflict(t *testing.T) {
	h := nodetest.Start(t)
	h.Enroll("fleet-00001", nil)
	_, err := fleet.Run(context.Background(), fleet.Config{Devices: 1, Hub: h.URL(), Token: h.Token, StateDir: t.TempDir(), Logger: testhelp.Logger(t)})
	if !errors.Is(err, fleet.ErrIdentity) {
		t.Fatalf("err = %v, want fleet.ErrIdentity", err)
	}
}

// runFleet starts fleet.Run with cfg and returns a stop function that ends it and returns its error.
func runFleet(t *testing.T, cfg fleet.Config) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := fleet.Run(ctx, cfg)
		done <- err
	}()
	var once bool
	var err error
	stop = func() error {
		if !once {
			once = true
			cancel()
			err = <-done
		}
		return err
	}
	t.Cleanup(func() { stop() })
	return stop
}

// onlineOn counts the devices h shows online.
func onlineOn(h *nodetest.Hub) int {
	n := 0
	for _, d := range devices(h) {
		if d.Online {
			n++
		}
	}
	return n
}

// TestFleetNewHub runs a fleet against hub A, then against a fresh hub B with the same state
// dir: B does not know the devices whose tokens fleet mode kept, so it enrols them again (with
// the admin token it holds) instead of connecting with tokens B refuses forever.
func TestFleetNewHub(t *testing.T) {
	stateDir := t.TempDir()
	a := nodetest.Start(t)
	cfg := fleet.Config{Devices: 3, Hub: a.URL(), Token: a.Token, Brokers: []string{a.MQTTURL()}, StateDir: stateDir,
		SummaryEvery: 200 * time.Millisecond, Out: &hubproc.Output{}, Logger: testhelp.Logger(t), Heartbeat: time.Second}
	stop := runFleet(t, cfg)
	testhelp.WaitFor(t, 20*time.Second, "3 devices online on hub A", func() bool { return onlineOn(a) == 3 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(filepath.Join(stateDir, fleet.CredentialsFile))
	if err != nil {
		t.Fatal(err)
	}

	b := nodetest.Start(t)
	cfg.Hub, cfg.Token, cfg.Brokers = b.URL(), b.Token, []string{b.MQTTURL()}
	out := &hubproc.Output{}
	cfg.Out = out
	stop = runFleet(t, cfg)
	testhelp.WaitFor(t, 20*time.Second, "3 devices online on hub B", func() bool { return onlineOn(b) == 3 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	after, _ := os.ReadFile(filepath.Join(stateDir, fleet.CredentialsFile))
	if bytes.Equal(before, after) {
		t.Fatal("the credentials file still holds hub A's tokens")
	}
	if n := len(devices(b)); n != 3 {
		t.Fatalf("%d devices on hub B", n)
	}
}

// TestFleetDeviceDeletedWhileRunning: a device deleted on the hub under a running fleet is
// disconnected and then refused; fleet mode notices, enrols it again and gives its agent the new
// token, and the device is back online (without waiting out the refused backoff).
func TestFleetDeviceDeletedWhileRunning(t *testing.T) {
	h := nodetest.Start(t)
	stateDir := t.TempDir()
	out := &hubproc.Output{}
	cfg := fleet.Config{Devices: 2, Hub: h.URL(), Token: h.Token, Brokers: []string{h.MQTTURL()}, StateDir: stateDir,
		SummaryEvery: 200 * time.Millisecond, Out: out, Logger: testhelp.Logger(t), Heartbeat: time.Second}
	stop := runFleet(t, cfg)
	testhelp.WaitFor(t, 20*time.Second, "2 devices online", func() bool { return onlineOn(h) == 2 })
	h.Call(http.MethodDelete, "/api/v1/devices/fleet-00002", nil, http.StatusOK, nil)
	testhelp.WaitFor(t, 30*time.Second, "fleet-00002 enrolled again and online", func() bool {
		for _, d := range devices(h) {
			if d.ID == "fleet-00002" && d.Online {
				return onlineOn(h) == 2
			}
		}
		return false
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	cs, err := os.ReadFile(filepath.Join(stateDir, fleet.CredentialsFile))
	if err != nil || !bytes.Contains(cs, []byte("fleet-00002")) {
		t.Fatalf("credentials file: %v\n%s", err, cs)
	}
}
