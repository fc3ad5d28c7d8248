package dashboard_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/driftline/driftline/hub/fleetdrift"
)

// TestDriftViewsInBrowser renders the drift answers of hub/fleetdrift (its own types, marshalled as
// the API does) with the dashboard's drift and device modules in Chromium, so the pages keep up
// with the API's shapes even before a node serves them.
func TestDriftViewsInBrowser(t *testing.T) {
	b := startBrowser(t)
	b.loadDashboard()

	f64 := func(x float64) *float64 { return &x }
	point := func(end int64, share, score float64) fleetdrift.Point {
		return fleetdrift.Point{Start: end - 60_000, End: end, Resolution: fleetdrift.ResolutionWindow, Devices: 2, Profiles: 4, Rows: 2000,
			DatasetDrift: share >= 0.5, DriftShare: share,
			Features: map[string]fleetdrift.FeaturePoint{"value": {Method: "wasserstein", Score: score, Threshold: 0.18, Drift: score > 0.18}}}
	}
	series := []fleetdrift.Point{point(1764096060000, 0, 0.05), point(1764096120000, 0.5, 0.31)}
	fleet := fleetdrift.FleetView{Model: "temp-model", Version: 3, Reference: &fleetdrift.RefView{Dataset: "temps", Version: 2},
		WindowSeconds: 60, CoarseSeconds: 3600, Versions: []int{3}, Devices: 2, DatasetDrift: true, DriftShare: 0.5,
		Latest: &series[1], Series: series, Coarse: []fleetdrift.Point{}, DriftingDevices: []string{"edge-2"},
		Features: map[string]fleetdrift.FleetFeatureView{"value": {
			FeaturePoint: fleetdrift.FeaturePoint{Method: "wasserstein", Score: 0.31, Threshold: 0.18, Calibrated: true, Drift: true, PSI: f64(0.4)},
			Devices:      []string{"edge-2"}}}}
	empty := fleetdrift.FleetView{Model: "temp-model", Version: 4, Features: map[string]fleetdrift.FleetFeatureView{}, DriftingDevices: []string{},
		Series: []fleetdrift.Point{}, Coarse: []fleetdrift.Point{}, Versions: []int{}}
	device := fleetdrift.DeviceView{Device: "edge-2", Models: []fleetdrift.DeviceModelView{{Model: "temp-model", Version: 3,
		Reference: &fleetdrift.RefView{Dataset: "temps", Version: 2},
		Latest:    fleetdrift.DeviceLatest{TS: 1764096120000, Rows: 1000, DatasetDrift: true, DriftShare: 0.5, Features: series[1].Features},
		Features:  []string{"value"},
		History: []fleetdrift.DevicePoint{{TS: 1764096060000, Rows: 1000, DriftShare: 0, Scores: []float64{0.05}},
			{TS: 1764096120000, Rows: 1000, DatasetDrift: true, DriftShare: 0.5, Scores: []float64{0.31}, Drifted: []int{0}}}}}}
	js := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	type rendered struct {
		Text   string `json:"text"`
		Lines  int    `json:"lines"`
		NoData bool   `json:"noData"`
	}
	render := func(module, call string) rendered {
		t.Helper()
		return eval[rendered](b, b.ctx, fmt.Sprintf(`(async () => {
			const m = await import(%q);
			const el = document.createElement('div');
			const out = m.%s;
			el.append(...[out].flat());
			document.body.append(el);
			return { text: el.innerText, lines: el.querySelectorAll('svg.spark path').length, noData: !!el.querySelector('.no-fleet-drift') };
		})()`, module, call))
	}
	cases := []struct {
		name, module, call string
		want               []string
		lines              int
		noData             bool
	}{
		{"fleet", "/ui/js/pages/drift.js", fmt.Sprintf("fleetCard({model: 'temp-model', version: 3}, %s)", js(fleet)),
			[]string{"dataset drift", "50.0%", "temps@2", "edge-2", "wasserstein", "0.31", "calibrated"}, 2, false},
		{"fleet without windows", "/ui/js/pages/drift.js", fmt.Sprintf("fleetCard({model: 'temp-model', version: 4}, %s)", js(empty)),
			[]string{"No fleet drift data yet"}, 0, true},
		{"fleet not served", "/ui/js/pages/drift.js", "fleetCard({model: 'temp-model', version: 4}, null)",
			[]string{"No fleet drift data yet"}, 0, true},
		{"device", "/ui/js/pages/device.js", fmt.Sprintf("driftModels(%s)", js(device)),
			[]string{"temp-model@3", "temps@2", "dataset drift", "2 windows", "wasserstein", "0.31"}, 2, false},
		{"device without profiles", "/ui/js/pages/device.js", fmt.Sprintf("driftModels(%s)", js(fleetdrift.DeviceView{Device: "edge-1", Models: []fleetdrift.DeviceModelView{}})),
			[]string{"has not scored a profile"}, 0, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := render(c.module, c.call)
			for _, w := range c.want {
				if !strings.Contains(r.Text, w) {
					t.Errorf("rendered text lacks %q:\n%s", w, r.Text)
				}
			}
			if r.Lines != c.lines || r.NoData != c.noData {
				t.Errorf("sparklines %d (want %d), no-data mark %v (want %v):\n%s", r.Lines, c.lines, r.NoData, c.noData, r.Text)
			}
			for _, bad := range []string{"null", "undefined", "NaN", "[object"} {
				if strings.Contains(r.Text, bad) {
					t.Errorf("rendered %q:\n%s", bad, r.Text)
				}
			}
		})
	}
	if p := b.problems(); len(p) > 0 {
		t.Errorf("browser console:\n%s", strings.Join(p, "\n"))
	}
}
