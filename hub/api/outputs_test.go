package api_test

import (
	"bytes"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/driftline/driftline/hub/state"
)

const outputContract = `{"primaryKey":["id"],"fields":[{"name":"id","type":"string"},
 {"name":"pred","type":"string","x-driftline":{"role":"prediction"}},
 {"name":"label","type":"string","x-driftline":{"role":"label"}}]}`

func TestModelVersionOutputs(t *testing.T) {
	h := startHub(t, nil)
	h.pushModel("clf", h.admin, []byte("model bytes"), "")
	var sample strings.Builder
	sample.WriteString("id,pred,label\n")
	correct := 0
	for i := range 200 {
		label := []string{"a", "b"}[i%2]
		pred := label
		if i%8 == 0 {
			pred = "b"
		}
		if pred == label {
			correct++
		}
		fmt.Fprintf(&sample, "r%d,%s,%s\n", i, pred, label)
	}
	put := func(contract, sampleText string) response {
		body, ct := multipartBody([]part{
			{name: "contract", contentType: "application/json", data: strings.NewReader(contract)},
			{name: "sample", filename: "val.csv", contentType: "text/csv", data: strings.NewReader(sampleText)},
		})
		return h.raw("PUT", "/api/v1/models/clf/versions/1/outputs", h.admin, ct, body)
	}
	r := put(outputContract, sample.String())
	if r.code != http.StatusOK {
		t.Fatalf("put outputs: %d %s", r.code, r.body)
	}
	var mv state.ModelVersion
	h.must(200, "GET", "/api/v1/models/clf/versions/1", h.admin, nil, &mv)
	want := float64(correct) / 200
	if mv.Output == nil || mv.Output.Metric != "accuracy" || mv.Output.Reference != want || mv.Output.Labels != 200 || !strings.HasPrefix(mv.Output.Digest, "sha256:") {
		t.Fatalf("output summary %+v, want accuracy %v on 200 labels", mv.Output, want)
	}
	ref := h.must(200, "GET", "/api/v1/models/clf/versions/1/outputs", h.admin, nil, nil)
	if !bytes.Contains(ref.body, []byte(`"metric":"accuracy"`)) {
		t.Fatalf("reference %s", ref.body)
	}
	if r := put(strings.Replace(outputContract, `"role":"label"`, `"role":"feature"`, 1), sample.String()); r.code != 400 {
		t.Fatalf("bad contract: %d %s", r.code, r.body)
	}
	if r := put(outputContract, "id,pred,label\nr1,a,\n"); r.code != 400 || !bytes.Contains(r.body, []byte("invalid-sample")) {
		t.Fatalf("sample without labels: %d %s", r.code, r.body)
	}
	h.must(200, "POST", "/api/v1/models/clf/versions/1/approve", h.admin, map[string]string{"comment": "ok"}, nil)
	if r := put(outputContract, sample.String()); r.code != http.StatusConflict {
		t.Fatalf("outputs of an approved version: %d %s", r.code, r.body)
	}
}

// A follower forwards a checked sample to the leader's POST /api/v1/devices/samples: staged
// once, a repeat changes nothing.
func TestSampleStageRoute(t *testing.T) {
	h := startHub(t, nil)
	h.pushDataset("temps", "")
	body := map[string]any{"sample": map[string]any{"device": "edge-1", "model": "m", "model_version": 1, "dataset": "temps",
		"dataset_version": 1, "window_index": 3, "window_end": 1000, "reason": "input_drift", "window_rows": 10,
		"rows": []map[string]any{{"temp": 40.5, "site": "a"}}}}
	var res map[string]bool
	h.must(200, "POST", "/api/v1/devices/samples", h.admin, body, &res)
	if !res["staged"] {
		t.Fatalf("first stage: %v", res)
	}
	h.must(200, "POST", "/api/v1/devices/samples", h.admin, body, &res)
	if res["staged"] {
		t.Fatalf("a repeat was staged again: %v", res)
	}
	staged, err := h.n.Reader().StagedSamples()
	if err != nil || len(staged) != 1 {
		t.Fatalf("%d staged (%v)", len(staged), err)
	}
	body["sample"].(map[string]any)["dataset_version"] = 9
	if r := h.do("POST", "/api/v1/devices/samples", h.admin, body); r.code != 404 {
		t.Fatalf("unknown dataset version: %d %s", r.code, r.body)
	}
}

// GET /api/v1/outputs adds the devices' output health up: drifted share, labels and the
// label-weighted relative performance.
func TestOutputsView(t *testing.T) {
	h := startHub(t, nil)
	h.pushModel("clf", h.admin, []byte("weights"), "")
	for _, id := range []string{"d1", "d2", "d3"} {
		h.must(201, "POST", "/api/v1/devices", h.admin, map[string]any{"id": id}, nil)
	}
	obs := func(id string, drift bool, labels int64, rel float64) map[string]any {
		pd := int64(0)
		if drift {
			pd = 1
		}
		return map[string]any{"id": id, "outputs": map[string]any{"model": "clf", "version": 1, "at": 1000, "prediction_windows": 1,
			"prediction_drifted": pd, "prediction_drift": drift, "labels": labels, "relative_sum": rel * float64(labels),
			"relative": rel, "metric": "accuracy", "value": rel}}
	}
	h.must(200, "POST", "/api/v1/devices/telemetry", h.admin, map[string]any{"devices": []any{
		obs("d1", true, 100, 0.5), obs("d2", false, 300, 0.9)}}, nil)
	var v struct {
		Devices              int      `json:"devices"`
		PredictionDrifted    int      `json:"prediction_drifted"`
		PredictionDriftShare float64  `json:"prediction_drift_share"`
		Labels               int64    `json:"labels"`
		Relative             *float64 `json:"relative"`
	}
	h.must(200, "GET", "/api/v1/outputs?model=clf", h.admin, nil, &v)
	want := (100*0.5 + 300*0.9) / 400
	if v.Devices != 2 || v.PredictionDrifted != 1 || v.PredictionDriftShare != 0.5 || v.Labels != 400 || v.Relative == nil || *v.Relative != want {
		t.Fatalf("view %+v (relative %v), want 2 devices, 1 drifted, 400 labels, relative %v", v, v.Relative, want)
	}
	if r := h.do("GET", "/api/v1/outputs", h.admin, nil); r.code != 400 {
		t.Fatalf("no model: %d", r.code)
	}
}
