package fleetdrift_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/driftline/driftline/hub/fleetdrift"
)

// FuzzObserve feeds arbitrary profile messages from a device that runs a model: each is used
// or refused with a sentinel error, never a panic, and the views stay encodable.
func FuzzObserve(f *testing.F) {
	s := newFleetSetup(f, fleetdrift.Config{})
	good := windowProfile(f, 200, 20, "abc", 1)
	f.Add(good)
	f.Add(windowProfile(f, 3, 1e300, "z", 2))
	f.Add([]byte{})
	f.Add(good[:10])
	f.Fuzz(func(t *testing.T, b []byte) {
		err := s.svc.Observe("d1", b)
		if err != nil && !errors.Is(err, fleetdrift.ErrBadProfile) && !errors.Is(err, fleetdrift.ErrNoModel) {
			t.Fatalf("unexpected error %v", err)
		}
		s.svc.Flush()
		key := fleetdrift.ModelKey{Model: "m", Version: 1}
		fv, err := s.svc.Fleet(key, 0)
		if err != nil {
			t.Fatal(err)
		}
		views := []any{fv, s.svc.Heatmap(key)}
		for _, feature := range []string{"temp", "site"} {
			dv, err := s.svc.Distribution(key, feature)
			if err != nil {
				t.Fatal(err)
			}
			views = append(views, dv)
		}
		for _, v := range views {
			if _, err := json.Marshal(v); err != nil {
				t.Fatalf("view %T not encodable: %v", v, err)
			}
		}
	})
}

// FuzzQueries sends arbitrary query strings to the fleet, heatmap and distribution routes: each
// answers 200, 400 or 404 with a body, never a panic or a 500.
func FuzzQueries(f *testing.F) {
	s := newFleetSetup(f, fleetdrift.Config{})
	if err := s.svc.Observe("d1", windowProfile(f, 200, 20, "abc", 1)); err != nil {
		f.Fatal(err)
	}
	e := echo.New()
	fleetdrift.Register(e.Group("/api/v1"), s.svc)
	for _, q := range []string{"model=m&version=1&feature=temp", "model=m&feature=site", "model=m&version=0", "model=%ff&feature=",
		"model=m&version=1&since=2026-03-01T13:00:00Z", "model=m&version=99999999999999999999", "feature=temp"} {
		f.Add(q)
	}
	f.Fuzz(func(t *testing.T, q string) {
		for _, route := range []string{"/api/v1/drift", "/api/v1/drift/heatmap", "/api/v1/drift/distribution"} {
			req := httptest.NewRequest(http.MethodGet, "/", nil)
			req.URL.Path, req.URL.RawQuery = route, q
			rec := httptest.NewRecorder()
			e.ServeHTTP(rec, req)
			switch rec.Code {
			case http.StatusOK, http.StatusBadRequest, http.StatusNotFound:
			default:
				t.Fatalf("GET %s?%s: %d %s", route, q, rec.Code, rec.Body)
			}
		}
	})
}
