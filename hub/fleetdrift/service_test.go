package fleetdrift_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/driftline/driftline/hub/command"
	"github.com/driftline/driftline/hub/fleetdrift"
	"github.com/driftline/driftline/hub/state"
	"github.com/driftline/driftline/internal/testhelp"
	"github.com/driftline/driftline/shared/profile"
	"github.com/driftline/driftline/shared/wire"
)

// fleetSetup is a hub with dataset sensors@1 (reference of 2,000 rows), model m@1 trained on it,
// devices d1 and d2 running m@1, d3 enrolled with no model, and a drift service on a test
// clock at the start of a minute.
type fleetSetup struct {
	h   hub
	svc *fleetdrift.Service
	clk *clock
	pub *published
}

func newFleetSetup(t testing.TB, cfg fleetdrift.Config) fleetSetup {
	t.Helper()
	h := startHub(t, false)
	h.pushDataset(t, "sensors", testContract, referenceCSV(2000, 7))
	v := h.pushModel(t, "m", "sensors")
	h.device(t, "d1", "m", v)
	h.device(t, "d2", "m", v)
	h.device(t, "d3", "", 0)
	clk := &clock{now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	pub := &published{}
	cfg.Registry, cfg.Now, cfg.Publish, cfg.Logger = h.n.Reader(), clk.Now, pub.Publish, testhelp.Logger(t)
	svc, err := fleetdrift.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return fleetSetup{h: h, svc: svc, clk: clk, pub: pub}
}

func TestFleetDrift(t *testing.T) {
	s := newFleetSetup(t, fleetdrift.Config{})
	key := fleetdrift.ModelKey{Model: "m", Version: 1}

	// Window 1: d1 looks like the reference; d2's temperature moved by 4 sd and a category swapped.
	s.clk.Add(10 * time.Second)
	if err := s.svc.Observe("d1", windowProfile(t, 500, 20, "abc", 1)); err != nil {
		t.Fatal(err)
	}
	if err := s.svc.Observe("d2", windowProfile(t, 500, 28, "abd", 2)); err != nil {
		t.Fatal(err)
	}
	v, err := s.svc.Fleet(key, 0)
	if err != nil {
		t.Fatal(err)
	}
	if v.Latest != nil || v.Current == nil || !v.Current.Partial || v.Current.Devices != 2 || v.Current.Rows != 1000 {
		t.Fatalf("before the window closes: latest %+v current %+v", v.Latest, v.Current)
	}
	if v.Reference == nil || *v.Reference != (fleetdrift.RefView{Dataset: "sensors", Version: 1}) {
		t.Fatalf("reference %+v", v.Reference)
	}

	// Windows 2 and 3: only d1, clean.
	for i := 0; i < 2; i++ {
		s.clk.Add(time.Minute)
		if err := s.svc.Observe("d1", windowProfile(t, 500, 20, "abc", uint64(10+i))); err != nil {
			t.Fatal(err)
		}
	}
	s.clk.Add(time.Minute)
	s.svc.Flush()
	v, err = s.svc.Fleet(key, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(v.Series) != 3 || v.Current != nil {
		t.Fatalf("series of %d points (want 3), current %+v", len(v.Series), v.Current)
	}
	first, last := v.Series[0], v.Series[2]
	if first.Devices != 2 || !first.Features["temp"].Drift || !first.DatasetDrift {
		t.Errorf("window 1 (half the fleet shifted) = %+v", first)
	}
	if last.Devices != 1 || last.Features["temp"].Drift || last.DatasetDrift {
		t.Errorf("window 3 (clean) = %+v", last)
	}
	if m := first.Features["temp"].Method; m != "wasserstein" {
		t.Errorf("temp method %q, want wasserstein (reference > 1,000 rows)", m)
	}
	if got := v.Features["temp"].Devices; len(got) != 1 || got[0] != "d2" {
		t.Errorf("devices drifting on temp: %v, want [d2]", got)
	}
	if len(v.DriftingDevices) != 1 || v.DriftingDevices[0] != "d2" {
		t.Errorf("drifting devices %v, want [d2]", v.DriftingDevices)
	}
	if since, _ := s.svc.Fleet(key, first.End); len(since.Series) != 2 {
		t.Errorf("since the end of window 1: %d points, want 2", len(since.Series))
	}

	// One message per closed window on dl/v1/fleet/drift/m.
	msgs := s.pub.all()
	if len(msgs) != 3 {
		t.Fatalf("%d fleet messages, want 3", len(msgs))
	}
	var fd wire.FleetDrift
	err = json.Unmarshal(msgs[0].payload, &fd)
	if err == nil {
		err = fd.Validate()
	}
	if err != nil || msgs[0].topic != "dl/v1/fleet/drift/m" {
		t.Fatalf("message 1 on %s: %v", msgs[0].topic, err)
	}
	if fd.Devices != 2 || fd.DriftingDevices != 1 || fd.Features["temp"].Drift != 1 || fd.Features["temp"].Devices != 1 || fd.Version != 1 {
		t.Errorf("fleet message of window 1: %+v", fd)
	}

	// The devices' own views.
	d2, err := s.svc.Device("d2")
	if err != nil {
		t.Fatal(err)
	}
	if len(d2.Models) != 1 || !d2.Models[0].Latest.DatasetDrift || !d2.Models[0].Latest.Features["temp"].Drift || len(d2.Models[0].History) != 1 {
		t.Errorf("d2 view %+v", d2)
	}
	d1, _ := s.svc.Device("d1")
	if len(d1.Models) != 1 || d1.Models[0].Latest.DatasetDrift || len(d1.Models[0].History) != 3 {
		t.Errorf("d1 view %+v", d1)
	}

	// An hour later: the coarse step closed with every profile, and the window points aged out.
	s.clk.Add(time.Hour)
	s.svc.Flush()
	v, _ = s.svc.Fleet(key, 0)
	if len(v.Coarse) != 1 || v.Coarse[0].Profiles != 4 || v.Coarse[0].Devices != 2 || v.Coarse[0].Rows != 2000 {
		t.Errorf("coarse points %+v", v.Coarse)
	}
	if len(v.Series) != 0 {
		t.Errorf("%d window points older than an hour kept", len(v.Series))
	}
}

func TestObserveRefusals(t *testing.T) {
	s := newFleetSetup(t, fleetdrift.Config{})
	good := windowProfile(t, 100, 20, "abc", 3)
	other, _ := profile.New([]profile.Column{{Name: "pressure", Kind: profile.Numeric}})
	cases := []struct {
		name    string
		device  string
		payload []byte
		want    error
	}{
		{"empty", "d1", nil, fleetdrift.ErrBadProfile},
		{"text", "d1", []byte("not a profile"), fleetdrift.ErrBadProfile},
		{"truncated", "d1", good[:len(good)/2], fleetdrift.ErrBadProfile},
		{"bad version", "d1", append([]byte{99}, good[1:]...), fleetdrift.ErrBadProfile},
		{"unknown device", "ghost", good, fleetdrift.ErrUnknownDevice},
		{"no active model", "d3", good, fleetdrift.ErrNoModel},
		{"columns of another contract", "d1", other.Encode(), fleetdrift.ErrNoModel},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := s.svc.Observe(tc.device, tc.payload); !errors.Is(err, tc.want) {
				t.Fatalf("err %v, want %v", err, tc.want)
			}
		})
	}
	st := s.svc.Stats()
	if st[fleetdrift.ResultBad] != 4 || st[fleetdrift.ResultUnknown] != 1 || st[fleetdrift.ResultUnmatched] != 2 || st[fleetdrift.ResultOK] != 0 {
		t.Errorf("stats %v", st)
	}
	if v, _ := s.svc.Fleet(fleetdrift.ModelKey{Model: "m", Version: 1}, 0); v.Current != nil || len(v.Series) != 0 {
		t.Errorf("refused profiles reached the fleet: %+v", v)
	}
}

func TestBounds(t *testing.T) {
	s := newFleetSetup(t, fleetdrift.Config{MaxDevices: 1, DeviceHistory: 3})
	for i := 0; i < 5; i++ {
		s.clk.Add(time.Minute)
		if err := s.svc.Observe("d1", windowProfile(t, 50, 20, "abc", uint64(i))); err != nil {
			t.Fatal(err)
		}
	}
	d1, _ := s.svc.Device("d1")
	if len(d1.Models) != 1 || len(d1.Models[0].History) != 3 || d1.Models[0].History[2].TS != s.clk.Now().UnixMilli() {
		t.Fatalf("d1 history %+v, want the 3 newest points", d1.Models)
	}
	if err := s.svc.Observe("d2", windowProfile(t, 50, 20, "abc", 9)); err != nil {
		t.Fatal(err)
	}
	if d1, _ := s.svc.Device("d1"); len(d1.Models) != 0 {
		t.Errorf("d1 still tracked beyond MaxDevices=1")
	}
	if d2, _ := s.svc.Device("d2"); len(d2.Models) != 1 {
		t.Errorf("d2 not tracked")
	}
}

func TestEnqueueRun(t *testing.T) {
	s := newFleetSetup(t, fleetdrift.Config{Queue: 2})
	if !s.svc.Enqueue("d1", windowProfile(t, 50, 20, "abc", 1)) || !s.svc.Enqueue("d1", []byte("junk")) {
		t.Fatal("enqueue refused below the bound")
	}
	if s.svc.Enqueue("d1", []byte("one too many")) {
		t.Fatal("enqueue accepted beyond the bound")
	}
	ctx, cancel := contextWithCancel(t)
	done := make(chan struct{})
	go func() { s.svc.Run(ctx); close(done) }()
	testhelp.WaitFor(t, 5*time.Second, "queued profiles observed", func() bool {
		st := s.svc.Stats()
		return st[fleetdrift.ResultOK] == 1 && st[fleetdrift.ResultBad] == 1 && st[fleetdrift.ResultDropped] == 1
	})
	cancel()
	<-done
}

func TestAPI(t *testing.T) {
	s := newFleetSetup(t, fleetdrift.Config{})
	// d3's agent says it drifted on m@1 (device health, as the MQTT side records it); this
	// node never saw its profiles, yet the fleet view names it.
	one := 1
	s.h.apply(t, command.TypeDeviceTelemetry, state.DeviceTelemetry{Devices: []state.DeviceObservation{{ID: "d3",
		Reported: &state.Reported{Rev: 1, Models: map[string]state.ReportedModel{"m": {Active: &one}}},
		Health:   &state.HealthSummary{Model: "m", Version: 1, Rows: 10, DatasetDrift: true, DriftShare: 1, At: 1}}}})
	if err := s.svc.Observe("d2", windowProfile(t, 500, 28, "abc", 2)); err != nil {
		t.Fatal(err)
	}
	s.clk.Add(time.Minute)
	s.svc.Flush()

	e := echo.New()
	fleetdrift.Register(e.Group("/api/v1"), s.svc)
	srv := httptest.NewServer(e)
	defer srv.Close()
	get := func(path string, want int, out any) {
		t.Helper()
		res, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		if res.StatusCode != want {
			t.Fatalf("GET %s: %d, want %d", path, res.StatusCode, want)
		}
		if out != nil {
			if err := json.NewDecoder(res.Body).Decode(out); err != nil {
				t.Fatal(err)
			}
		}
	}
	var fv fleetdrift.FleetView
	get("/api/v1/drift?model=m&version=1", http.StatusOK, &fv)
	if len(fv.Series) != 1 || fv.Latest == nil || !fv.Features["temp"].Drift || fv.Features["temp"].Threshold != 0.1 {
		t.Errorf("fleet view %+v", fv)
	}
	if len(fv.DriftingDevices) != 2 || fv.DriftingDevices[0] != "d2" || fv.DriftingDevices[1] != "d3" {
		t.Errorf("drifting devices %v, want [d2 d3]", fv.DriftingDevices)
	}
	var latest fleetdrift.FleetView
	get("/api/v1/drift?model=m", http.StatusOK, &latest)
	if latest.Version != 1 || fmt.Sprint(latest.Versions) != "[1]" || latest.Devices != 1 || !latest.DatasetDrift || latest.DriftShare != 0.5 {
		t.Errorf("without version: %+v", latest)
	}
	get("/api/v1/drift?model=m&version=1&since=2026-03-01T13:00:00Z", http.StatusOK, &fv)
	if len(fv.Series) != 0 {
		t.Errorf("since an hour later: %d points", len(fv.Series))
	}
	var dv fleetdrift.DeviceView
	get("/api/v1/devices/d2/drift", http.StatusOK, &dv)
	if len(dv.Models) != 1 || dv.Models[0].Reference == nil || dv.Models[0].Reference.Dataset != "sensors" || !dv.Models[0].Latest.DatasetDrift {
		t.Errorf("d2 view %+v", dv)
	}
	get("/api/v1/devices/d3/drift", http.StatusOK, &dv)
	if len(dv.Models) != 0 || dv.Health == nil || !dv.Health.DatasetDrift {
		t.Errorf("d3 view %+v", dv)
	}
	for _, c := range []struct {
		path string
		want int
	}{
		{"/api/v1/drift", http.StatusBadRequest},
		{"/api/v1/drift?model=m&version=0", http.StatusBadRequest},
		{"/api/v1/drift?model=nope", http.StatusNotFound},
		{"/api/v1/drift?model=m&version=x", http.StatusBadRequest},
		{"/api/v1/drift?model=m&version=1&since=yesterday", http.StatusBadRequest},
		{"/api/v1/drift?model=m&version=9", http.StatusNotFound},
		{"/api/v1/drift?model=nope&version=1", http.StatusNotFound},
		{"/api/v1/devices/ghost/drift", http.StatusNotFound},
	} {
		get(c.path, c.want, nil)
	}
}

// TestForgetDropsDeviceHistory: a device the hub removed (the node calls Forget from the change
// feed) loses its drift history, so a device enrolled again under the same id starts clean.
func TestForgetDropsDeviceHistory(t *testing.T) {
	s := newFleetSetup(t, fleetdrift.Config{})
	if err := s.svc.Observe("d1", windowProfile(t, 500, 20, "abc", 1)); err != nil {
		t.Fatal(err)
	}
	if v, err := s.svc.Device("d1"); err != nil || len(v.Models) != 1 {
		t.Fatalf("before: %+v %v", v, err)
	}
	s.svc.Forget("d1")
	if v, err := s.svc.Device("d1"); err != nil || len(v.Models) != 0 {
		t.Fatalf("after Forget the device still has drift history: %+v %v", v, err)
	}
}
