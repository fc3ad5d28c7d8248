package fleetdrift_test

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/driftline/driftline/hub/command"
	"github.com/driftline/driftline/hub/fleetdrift"
	"github.com/driftline/driftline/hub/state"
	"github.com/driftline/driftline/internal/testhelp"
	"github.com/driftline/driftline/shared/artifact"
	"github.com/driftline/driftline/shared/contract"
	"github.com/driftline/driftline/shared/contract/rows"
	driftstat "github.com/driftline/driftline/shared/drift"
	"github.com/driftline/driftline/shared/outputs"
	"github.com/driftline/driftline/shared/profile"
	"github.com/driftline/driftline/shared/wire"
)

// classOutputs is a classification output contract; the prediction is scored with the
// defaults (chi-square for a reference of at most 1,000 rows).
const classOutputs = `{"primaryKey":["id"],"fields":[
 {"name":"id","type":"string"},
 {"name":"pred","type":"string","x-driftline":{"role":"prediction"}},
 {"name":"label","type":"string","x-driftline":{"role":"label"}}]}`

// predictionWindow is an agent's output window profile (agent/outputs builds it the same way:
// the prediction contract's columns, one row per prediction) of a predictions then b ones.
func predictionWindow(t testing.TB, c *outputs.Contract, device string, a, b int) *profile.Profile {
	t.Helper()
	p, err := profile.New(driftstat.Columns(c.PredictionSchema()))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < a+b; i++ {
		class := "a"
		if i >= a {
			class = "b"
		}
		row := []contract.Value{{Kind: contract.KindString, Str: fmt.Sprintf("%s-%d", device, i)}, {Kind: contract.KindString, Str: class}}
		if err := p.Add(row); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// TestFleetPredictionDriftMergesProfiles: 25 devices each predict class a 60% of the time
// where the validation set had 50%. Each device's window of 40 predictions is too small for its
// own test to call that drift, so the share of drifting devices is 0 (what the fleet showed
// before); the 1,000 merged predictions drift clearly, and that is what the fleet view of
// predictions reports, publishes and serves.
func TestFleetPredictionDriftMergesProfiles(t *testing.T) {
	h := startHub(t, false)
	h.pushDataset(t, "sensors", testContract, referenceCSV(500, 7))
	v := h.pushModel(t, "clf", "sensors")
	oc, err := outputs.ParseContract([]byte(classOutputs))
	if err != nil {
		t.Fatal(err)
	}
	var sample strings.Builder
	sample.WriteString("id,pred,label\n")
	for i := 0; i < 1000; i++ {
		c := string(rune('a' + i%2))
		fmt.Fprintf(&sample, "v-%d,%s,%s\n", i, c, c)
	}
	ref, err := outputs.Build(oc, []byte(sample.String()), rows.FormatCSV)
	if err != nil {
		t.Fatal(err)
	}
	refBytes, err := ref.Encode()
	if err != nil {
		t.Fatal(err)
	}
	h.apply(t, command.TypeModelVersionOutputSet, state.ModelVersionOutputSet{Model: "clf", Version: v, Reference: refBytes,
		Summary: state.OutputSummary{Digest: artifact.DigestOf(refBytes), Task: oc.Task, Metric: oc.Metric, Reference: 1, Labels: 1000, Prediction: "pred"}})
	dec, err := outputs.Decode(refBytes)
	if err != nil {
		t.Fatal(err)
	}
	opts, ok, err := driftstat.ReferenceOptions(oc.PredictionSchema(), dec.Profile)
	if err != nil || !ok {
		t.Fatalf("reference options: %v %v", ok, err)
	}

	clk := &clock{now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	pub := &published{}
	svc, err := fleetdrift.New(fleetdrift.Config{Predictions: true, Registry: h.n.Reader(), Now: clk.Now, Publish: pub.Publish, Logger: testhelp.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	const devices = 25
	clk.Add(5 * time.Second)
	for i := 0; i < devices; i++ {
		id := fmt.Sprintf("p%02d", i)
		h.device(t, id, "clf", v)
		w := predictionWindow(t, oc, id, 24, 16)
		// The device's own verdict, computed as the agent computes it.
		rep, err := driftstat.Compare(dec.Profile, w, opts)
		if err != nil {
			t.Fatal(err)
		}
		if fr := rep.Features["pred"]; fr.Drift || fr.Skipped != "" {
			t.Fatalf("device %s: its own window drifts (%+v): the test needs windows that do not", id, fr)
		}
		if err := svc.Observe(id, w.Encode()); err != nil {
			t.Fatal(err)
		}
	}
	clk.Add(time.Minute)
	svc.Flush()

	key := fleetdrift.ModelKey{Model: "clf", Version: v}
	view, err := svc.Fleet(key, 0)
	if err != nil {
		t.Fatal(err)
	}
	if view.Reference == nil || view.Reference.Output != artifact.DigestOf(refBytes) {
		t.Fatalf("reference %+v, want the output reference", view.Reference)
	}
	if view.Latest == nil || view.Latest.Devices != devices || view.Latest.Rows != devices*40 {
		t.Fatalf("latest window %+v, want %d devices and %d rows merged", view.Latest, devices, devices*40)
	}
	fp, ok := view.Latest.Features["pred"]
	if !ok || !fp.Drift || !view.DatasetDrift {
		t.Fatalf("merged predictions: %+v (dataset drift %v), want drift", fp, view.DatasetDrift)
	}
	// The merged verdict against an independent computation: the chi-square of 600 a and 400
	// b against the reference's 50/50 is 2 x 100^2/500 = 40 with one degree of freedom, whose
	// p-value is erfc(sqrt(40/2)).
	if want := math.Erfc(math.Sqrt(20)); fp.ScoreType != driftstat.ScorePValue || math.Abs(fp.Score-want) > 1e-3*want {
		t.Fatalf("merged p-value %g (%s), want %g", fp.Score, fp.ScoreType, want)
	}
	if len(view.DriftingDevices) != 0 {
		t.Fatalf("drifting devices %v, want none: no device's own window drifted", view.DriftingDevices)
	}

	// Published on the prediction topic, not on the input fleet topic.
	var msg wire.FleetDrift
	found := false
	for _, m := range pub.all() {
		if m.topic == wire.Default().FleetDrift("clf") {
			t.Fatalf("prediction drift published on the input topic %s", m.topic)
		}
		if m.topic == wire.Default().FleetPredictionDrift("clf") {
			if err := json.Unmarshal(m.payload, &msg); err != nil {
				t.Fatal(err)
			}
			found = true
		}
	}
	if !found || msg.DatasetDrift != 1 || msg.Features["pred"].Drift != 1 || msg.DriftingDevices != 0 || msg.Devices != devices {
		t.Fatalf("fleet prediction message %+v (found %v)", msg, found)
	}

	// The node serves its own service's view at GET /api/v1/drift/predictions.
	var api fleetdrift.FleetView
	h.call(t, http.MethodGet, fmt.Sprintf("/api/v1/drift/predictions?model=clf&version=%d", v), nil, http.StatusOK, &api)
	if api.Reference == nil || api.Reference.Output == "" {
		t.Fatalf("API fleet prediction view %+v", api)
	}
}
