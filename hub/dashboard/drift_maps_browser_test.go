package dashboard_test

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/driftline/driftline/shared/drift"

	"github.com/driftline/driftline/internal/testhelp"

	"github.com/chromedp/chromedp"
	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/driftline/driftline/hub/fleetdrift"
	"github.com/driftline/driftline/shared/contract"
	"github.com/driftline/driftline/shared/profile"
	"github.com/driftline/driftline/shared/wire"
)

// mapsContract has a numeric and a categorical feature, so the page draws both kinds.
const mapsContract = `{"fields":[{"name":"temp","type":"number"},{"name":"site","type":"string"}]}`

// mapsRows returns n CSV rows (no header) of temp ~ N(mean, 2) and site drawn from sites.
func mapsRows(n int, mean float64, sites string, seed uint64) [][2]string {
	r := rand.New(rand.NewPCG(seed, 3))
	out := make([][2]string, n)
	for i := range out {
		out[i] = [2]string{strconv.FormatFloat(mean+2*r.NormFloat64(), 'f', 4, 64), string(sites[r.IntN(len(sites))])}
	}
	return out
}

// mapsProfile is the window profile an agent on mapsContract builds from rows.
func mapsProfile(t *testing.T, rows [][2]string) []byte {
	t.Helper()
	schema, err := contract.Parse([]byte(mapsContract))
	if err != nil {
		t.Fatal(err)
	}
	p, err := profile.New(drift.Columns(schema))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		x, _ := strconv.ParseFloat(r[0], 64)
		if err := p.Add([]contract.Value{{Kind: contract.KindNumber, Num: x}, {Kind: contract.KindString, Str: r[1]}}); err != nil {
			t.Fatal(err)
		}
	}
	return p.Encode()
}

// runAgent connects as device id, reports model@version active, waits until the hub has it,
// then publishes one window profile, as an agent does at the end of a window.
func (h *testHub) runAgent(id, token, model string, version int, prof []byte) {
	h.t.Helper()
	opts := paho.NewClientOptions().AddBroker(h.node.MQTTURL()).SetClientID(id).SetUsername(id).SetPassword(token)
	c := paho.NewClient(opts)
	if tk := c.Connect(); !tk.WaitTimeout(5*time.Second) || tk.Error() != nil {
		h.t.Fatalf("connect %s: %v", id, tk.Error())
	}
	h.t.Cleanup(func() { c.Disconnect(100) })
	topics := wire.Default()
	v := version
	rep, err := wire.Encode(wire.Reported{Header: wire.Header{DeviceID: id, TS: time.Now().UnixMilli()}, Rev: 1, AgentVersion: "0.9.0-test",
		Models: map[string]wire.ReportedModel{model: {Active: &v, State: wire.StateActive}}})
	if err != nil {
		h.t.Fatal(err)
	}
	if tk := c.Publish(topics.Reported(id), 1, true, rep); !tk.WaitTimeout(5*time.Second) || tk.Error() != nil {
		h.t.Fatalf("publish reported %s: %v", id, tk.Error())
	}
	testhelp.WaitFor(h.t, 15*time.Second, id+" running "+model, func() bool {
		var d struct {
			Reported struct {
				Models map[string]struct {
					Active *int `json:"active"`
				} `json:"models"`
			} `json:"reported"`
		}
		h.call(http.MethodGet, "/api/v1/devices/"+id, nil, http.StatusOK, &d)
		a := d.Reported.Models[model].Active
		return a != nil && *a == version
	})
	h.profiles = append(h.profiles, func() {
		if tk := c.Publish(topics.Profile(id), 1, false, prof); !tk.WaitTimeout(5*time.Second) || tk.Error() != nil {
			h.t.Fatalf("publish profile %s: %v", id, tk.Error())
		}
	})
}

// publishProfiles sends the profiles of every runAgent device inside one fleet window (1
// minute, aligned to the epoch): when less than 20 s of the current one is left, it waits for
// the next to begin, so the merged view holds all of them.
func (h *testHub) publishProfiles() {
	h.t.Helper()
	left := func() time.Duration {
		return time.Minute - time.Duration(time.Now().UnixMilli()%60_000)*time.Millisecond
	}
	if left() < 20*time.Second {
		testhelp.WaitFor(h.t, 30*time.Second, "the next fleet window", func() bool { return left() > 30*time.Second })
	}
	for _, publish := range h.profiles {
		publish()
	}
}

// jsNum formats x as the dashboard's num(x, digits) does.
func jsNum(x float64, digits int) string {
	s := strconv.FormatFloat(x, 'f', digits, 64)
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s
}

// TestDriftMapsInBrowser: a real hub merges the window profiles three devices publish over
// MQTT; the drift page shows its heatmap (each cell the API's score, its colour step from
// score/threshold, ▲ where it drifted) and the reference vs current distribution of the
// feature furthest over its threshold, then of the categorical feature picked in the list.
func TestDriftMapsInBrowser(t *testing.T) {
	b := startBrowser(t)
	h := startHub(t)
	var sample strings.Builder
	sample.WriteString("temp,site\n")
	for _, r := range mapsRows(2000, 20, "abc", 1) {
		fmt.Fprintf(&sample, "%s,%s\n", r[0], r[1])
	}
	h.call(http.MethodPost, "/api/v1/datasets", map[string]string{"name": "line"}, http.StatusCreated, nil)
	h.multipart("/api/v1/datasets/line/versions", nil, map[string][2]string{"contract": {"contract.json", mapsContract}, "sample": {"sample.csv", sample.String()}}, http.StatusCreated, nil)
	h.call(http.MethodPost, "/api/v1/models", map[string]string{"name": "press"}, http.StatusCreated, nil)
	var mv struct {
		Version int `json:"version"`
	}
	h.multipart("/api/v1/models/press/versions", map[string]string{"metadata": `{"format":"onnx","trained_on":[{"dataset":"line","version":1}]}`},
		map[string][2]string{"artifact": {"model.onnx", "weights"}}, http.StatusCreated, &mv)

	devices := []struct {
		id    string
		mean  float64
		sites string
	}{{"press-a", 20, "abc"}, {"press-b", 27, "abc"}, {"press-c", 20, "abd"}}
	for i, d := range devices {
		var dev struct {
			Token string `json:"token"`
		}
		h.call(http.MethodPost, "/api/v1/devices", map[string]any{"id": d.id}, http.StatusCreated, &dev)
		h.runAgent(d.id, dev.Token, "press", mv.Version, mapsProfile(t, mapsRows(2000, d.mean, d.sites, uint64(10+i))))
	}
	h.publishProfiles()
	q := fmt.Sprintf("model=press&version=%d", mv.Version)
	var hm fleetdrift.HeatmapView
	testhelp.WaitFor(t, 15*time.Second, "three devices in the heatmap", func() bool {
		h.call(http.MethodGet, "/api/v1/drift/heatmap?"+q, nil, http.StatusOK, &hm)
		return hm.Total == 3
	})
	if strings.Join(hm.Features, ",") != "site,temp" {
		t.Fatalf("heatmap features %v", hm.Features)
	}

	ctx := b.ctx
	b.login(ctx, h.URL, h.token)
	b.open(ctx, "#/drift", "drift")
	b.wait(ctx, "heatmap cells", `document.querySelectorAll('.hm-table td.hm').length === 6`)

	// Every cell shows the API's score, the colour step of score/threshold and the drift mark.
	type cellSeen struct {
		Text  string `json:"text"`
		Level string `json:"level"`
		Title string `json:"title"`
	}
	for _, row := range hm.Devices {
		got := eval[[]cellSeen](b, ctx, fmt.Sprintf(`[...document.querySelectorAll('.hm-table tr[data-device=%q] td.hm')]
			.map((td) => ({ text: td.textContent, level: td.dataset.level ?? '', title: td.title }))`, row.Device))
		if len(got) != len(hm.Features) {
			t.Fatalf("%s: %d cells on the page, want %d", row.Device, len(got), len(hm.Features))
		}
		for i, c := range row.Cells {
			want := jsNum(c.Score, 3)
			if c.Drift {
				want += " ▲"
			}
			lv := 0
			for _, edge := range []float64{0.5, 0.8, 1, 2} {
				if c.Relative >= edge {
					lv++
				}
			}
			if got[i].Text != want || got[i].Level != strconv.Itoa(lv) || !strings.Contains(got[i].Title, "threshold "+jsNum(c.Threshold, 4)) {
				t.Errorf("%s %s: page %+v, API %+v (want text %q level %d)", row.Device, hm.Features[i], got[i], *c, want, lv)
			}
		}
	}
	drifted := map[string]bool{}
	for _, row := range hm.Devices {
		for i, c := range row.Cells {
			if c.Drift {
				drifted[row.Device+"/"+hm.Features[i]] = true
			}
		}
	}
	for _, r := range hm.Devices {
		t.Logf("%s: site %+v temp %+v", r.Device, *r.Cells[0], *r.Cells[1])
	}
	if !drifted["press-b/temp"] || !drifted["press-c/site"] || drifted["press-a/temp"] || drifted["press-a/site"] {
		t.Errorf("drifted cells %v, want press-b/temp and press-c/site", drifted)
	}

	// The numeric distribution: two CDF lines of 21 points each.
	// The merged view follows the per-device scores (it is rebuilt from the same profiles on
	// the service's own pass), so it is waited for, not read once.
	var dist fleetdrift.DistributionView
	testhelp.WaitFor(t, 15*time.Second, "three devices in the temp distribution", func() bool {
		dist = fleetdrift.DistributionView{}
		h.call(http.MethodGet, "/api/v1/drift/distribution?"+q+"&feature=temp", nil, http.StatusOK, &dist)
		return dist.Current != nil && dist.Current.Devices == 3
	})
	type chart struct {
		Feature string `json:"feature"`
		Kind    string `json:"kind"`
		Ref     int    `json:"ref"`
		Cur     int    `json:"cur"`
		Bars    int    `json:"bars"`
		Text    string `json:"text"`
	}
	read := `(() => { const d = document.querySelector('.distribution'); const pts = (sel) => (d.querySelector(sel)?.getAttribute('d') || '').split(/[ML]/).filter(Boolean).length;
		return { feature: d.dataset.feature, kind: d.dataset.kind, ref: pts('svg path.ref'), cur: pts('svg path.cur'), bars: d.querySelectorAll('svg rect.cur').length, text: d.innerText }; })()`
	b.wait(ctx, "the distribution of temp", `document.querySelector('.distribution svg path.cur') && document.querySelector('.distribution').dataset.feature === 'temp'`)
	if c := eval[chart](b, ctx, read); c.Kind != "numeric" || c.Ref != fleetdrift.DistributionQuantiles || c.Cur != fleetdrift.DistributionQuantiles ||
		!strings.Contains(c.Text, jsNum(dist.Current.Quantiles[10].Value, 3)) || !strings.Contains(c.Text, "3 devices") {
		t.Errorf("temp chart %+v, API median %v", c, dist.Current.Quantiles[10].Value)
	}
	b.screenshot(ctx, "drift-maps-numeric")

	// Picking site draws paired bars, one per value of either side (a, b, c, d).
	h.call(http.MethodGet, "/api/v1/drift/distribution?"+q+"&feature=site", nil, http.StatusOK, &dist)
	b.do(ctx, "pick site", chromedp.Evaluate[chromedp.Void](`(() => { const s = document.querySelector('select.feature-pick'); s.value = 'site'; s.dispatchEvent(new Event('change')); })()`))
	b.wait(ctx, "the distribution of site", `document.querySelector('.distribution')?.dataset.kind === 'categorical'`)
	if c := eval[chart](b, ctx, read); c.Bars != len(dist.Current.Items) || c.Bars != 4 || !strings.Contains(c.Text, "d") {
		t.Errorf("site chart %+v, API items %+v", c, dist.Current.Items)
	}
	// The choice survives the next poll.
	ready := eval[string](b, ctx, `document.querySelector('#page').dataset.ready`)
	b.wait(ctx, "the next poll", fmt.Sprintf(`document.querySelector('#page').dataset.ready !== %q`, ready))
	if c := eval[chart](b, ctx, read); c.Feature != "site" || c.Bars != 4 {
		t.Errorf("after a poll the chart is %+v, want site still", c)
	}
	b.screenshot(ctx, "drift-maps-categorical")
	if p := b.problems(); len(p) > 0 {
		t.Errorf("browser console:\n%s", strings.Join(p, "\n"))
	}
}
