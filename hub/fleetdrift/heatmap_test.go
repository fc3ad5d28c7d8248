package fleetdrift_test

import (
	"encoding/json"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/driftline/driftline/hub/fleetdrift"
)

// apiServer serves the drift routes of s.svc.
func apiServer(t *testing.T, s fleetSetup) func(path string, want int, out any) {
	e := echo.New()
	fleetdrift.Register(e.Group("/api/v1"), s.svc)
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	return func(path string, want int, out any) {
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
}

func TestHeatmap(t *testing.T) {
	s := newFleetSetup(t, fleetdrift.Config{})
	get := apiServer(t, s)
	var empty fleetdrift.HeatmapView
	get("/api/v1/drift/heatmap?model=m&version=1", http.StatusOK, &empty)
	if empty.Total != 0 || len(empty.Devices) != 0 || len(empty.Features) != 0 {
		t.Fatalf("before any profile: %+v", empty)
	}
	s.clk.Add(10 * time.Second)
	if err := s.svc.Observe("d1", windowProfile(t, 500, 20, "abc", 1)); err != nil {
		t.Fatal(err)
	}
	if err := s.svc.Observe("d2", windowProfile(t, 500, 28, "abd", 2)); err != nil {
		t.Fatal(err)
	}
	var v fleetdrift.HeatmapView
	get("/api/v1/drift/heatmap?model=m", http.StatusOK, &v)
	if v.Model != "m" || v.Version != 1 || v.Total != 2 || strings.Join(v.Features, ",") != "site,temp" {
		t.Fatalf("heatmap %+v", v)
	}
	// d2 drifted, so it comes first.
	cases := []struct {
		device          string
		drift           bool
		tempOver, sites bool
	}{
		{"d2", true, true, true},
		{"d1", false, false, false},
	}
	for i, c := range cases {
		row := v.Devices[i]
		if row.Device != c.device || row.DatasetDrift != c.drift || row.Rows != 500 || len(row.Cells) != 2 {
			t.Errorf("row %d: %+v, want device %s drift %v", i, row, c.device, c.drift)
			continue
		}
		site, temp := row.Cells[0], row.Cells[1]
		if temp == nil || site == nil {
			t.Fatalf("row %s: missing cells %+v", c.device, row.Cells)
		}
		if temp.Drift != c.tempOver || (temp.Relative > 1) != c.tempOver || math.Abs(temp.Relative-temp.Score/temp.Threshold) > 1e-9 {
			t.Errorf("%s temp cell %+v, want drift %v", c.device, temp, c.tempOver)
		}
		if site.Drift != c.sites {
			t.Errorf("%s site cell %+v, want drift %v", c.device, site, c.sites)
		}
	}
	// A device's latest window older than the fine retention leaves the map.
	s.clk.Add(2 * time.Hour)
	get("/api/v1/drift/heatmap?model=m&version=1", http.StatusOK, &v)
	if v.Total != 0 || len(v.Devices) != 0 {
		t.Errorf("two hours later: %+v", v)
	}
	for _, c := range []struct {
		path string
		want int
	}{
		{"/api/v1/drift/heatmap", http.StatusBadRequest},
		{"/api/v1/drift/heatmap?model=m&version=0", http.StatusBadRequest},
		{"/api/v1/drift/heatmap?model=nope", http.StatusNotFound},
		{"/api/v1/drift/heatmap?model=m&version=9", http.StatusNotFound},
	} {
		get(c.path, c.want, nil)
	}
}
