package api_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/driftline/driftline/hub/api"
	"github.com/driftline/driftline/hub/state"
)

// checkAnswer is the property every fuzz target holds the API to: whatever the body, the answer
// is 2xx with a JSON body or 4xx with a problem document; never 5xx (a panic in a handler
// becomes a 500 through the recover middleware, so it fails here too).
func checkAnswer(t *testing.T, r response) {
	t.Helper()
	switch {
	case r.code >= 200 && r.code < 300:
		if !json.Valid(r.body) {
			t.Fatalf("%d with a body that is not JSON: %q", r.code, r.body)
		}
	case r.code >= 400 && r.code < 500:
		if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
			t.Fatalf("%d with Content-Type %q", r.code, ct)
		}
		var p api.Problem
		if err := json.Unmarshal(r.body, &p); err != nil || !strings.HasPrefix(p.Type, api.ProblemBase) || p.Status != r.code {
			t.Fatalf("%d with a bad problem document %q (%v)", r.code, r.body, err)
		}
	default:
		t.Fatalf("status %d: %s", r.code, r.body)
	}
}

// fuzzJSONRoute starts a hub with a dataset temps@1, an approved model m@1 and a device dev-1,
// and sends each fuzz input as the JSON body of method path.
func fuzzJSONRoute(f *testing.F, method, path string, seeds ...string) {
	h := startHub(f, nil)
	h.pushDataset("temps", "")
	h.pushModel("m", h.admin, []byte("model bytes"), `{"trained_on":[{"dataset":"temps","version":1}]}`)
	h.must(http.StatusOK, "POST", "/api/v1/models/m/versions/1/approve", h.admin, nil, nil)
	h.must(http.StatusCreated, "POST", "/api/v1/devices", h.admin, api.DeviceRequest{ID: "dev-1"}, nil)
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Add([]byte(``))
	f.Add([]byte(`null`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`{"a":`))
	f.Add([]byte("\xff\xfe"))
	f.Fuzz(func(t *testing.T, body []byte) {
		checkAnswer(t, h.with(t).raw(method, path, h.admin, "application/json", bytes.NewReader(body)))
	})
}

// FuzzCreateRequest fuzzes the body of POST /api/v1/datasets (and, by the same type, models).
func FuzzCreateRequest(f *testing.F) {
	fuzzJSONRoute(f, "POST", "/api/v1/datasets",
		`{"name":"a","description":"d"}`, `{"name":"temps"}`, `{"name":""}`, `{"name":5}`, `{"name":"a","x":1}`,
		`{"name":"`+strings.Repeat("n", 200)+`"}`)
}

// FuzzDeviceRequest fuzzes the body of POST /api/v1/devices.
func FuzzDeviceRequest(f *testing.F) {
	fuzzJSONRoute(f, "POST", "/api/v1/devices",
		`{"id":"d2","labels":{"site":"berlin"}}`, `{"id":"dev-1"}`, `{"id":"a b"}`, `{"id":"d3","labels":{"":"x"}}`,
		`{"id":"d4","labels":{"k":null}}`, `{"id":"d5","labels":[]}`)
}

// FuzzPatchRequest fuzzes the body of PATCH /api/v1/devices/{id}.
func FuzzPatchRequest(f *testing.F) {
	fuzzJSONRoute(f, "PATCH", "/api/v1/devices/dev-1",
		`{"labels":{"site":"berlin","tier":null}}`, `{"labels":{}}`, `{}`, `{"labels":{"a b":"c"}}`, `{"labels":{"k":5}}`)
}

// FuzzTokenRequest fuzzes the body of POST /api/v1/tokens.
func FuzzTokenRequest(f *testing.F) {
	fuzzJSONRoute(f, "POST", "/api/v1/tokens",
		`{"name":"ci","role":"viewer"}`, `{"name":"x","role":"device"}`, `{"name":"x","role":"root"}`, `{"role":"admin"}`)
}

// FuzzVersionRequest fuzzes the body of PUT /api/v1/models/{name}/aliases/{alias}.
func FuzzVersionRequest(f *testing.F) {
	fuzzJSONRoute(f, "PUT", "/api/v1/models/m/aliases/production",
		`{"version":1}`, `{"version":0}`, `{"version":-1}`, `{"version":2}`, `{"version":"1"}`, `{"version":1e99}`, `{}`)
}

// FuzzDesiredRequest fuzzes the VersionRequest body of PUT /api/v1/devices/{id}/models/{name}.
func FuzzDesiredRequest(f *testing.F) {
	fuzzJSONRoute(f, "PUT", "/api/v1/devices/dev-1/models/m",
		`{"version":1}`, `{"version":0}`, `{"version":9}`, `{"version":null}`)
}

// FuzzApproveRequest fuzzes ApproveRequest, the optional body of POST .../approve and
// .../deprecate; it is sent to deprecate, where a valid body always reaches the state machine.
func FuzzApproveRequest(f *testing.F) {
	fuzzJSONRoute(f, "POST", "/api/v1/models/m/versions/1/deprecate", `{"comment":"old"}`, `{"comment":1}`)
}

// FuzzDeviceTelemetry fuzzes the body of POST /api/v1/devices/telemetry.
func FuzzDeviceTelemetry(f *testing.F) {
	fuzzJSONRoute(f, "POST", "/api/v1/devices/telemetry",
		`{"devices":[{"id":"dev-1","online":true,"last_seen":1700000000000}]}`,
		`{"devices":[{"id":"dev-1","reported":{"rev":1,"models":{"m":{"active":1,"state":"active"}}}}]}`,
		`{"devices":[{"id":"ghost","online":false}]}`, `{"devices":[{"id":"a b"}]}`,
		`{"devices":[{"id":"dev-1","health":{"rows":10,"invalid":1,"dataset_drift":true,"drift_share":0.5,"at":1}}]}`)
}

// FuzzRunEvent fuzzes the body of POST /api/v1/openlineage.
func FuzzRunEvent(f *testing.F) {
	example, err := os.ReadFile("testdata/openlineage/example_full_event.json")
	if err != nil {
		f.Fatal(err)
	}
	fuzzJSONRoute(f, "POST", "/api/v1/openlineage", string(example),
		`{"eventType":"START","eventTime":"2024-01-01T00:00:00Z","producer":"p","schemaURL":"s","run":{"runId":"ea041791-68bc-4ae1-bd89-4c8106a157e4"},"job":{"namespace":"n","name":"j"}}`,
		`{"eventType":"COMPLETE","eventTime":"2024-01-01T00:00:00Z","producer":"p","schemaURL":"s","run":{"runId":"ea041791-68bc-4ae1-bd89-4c8106a157e4"},"job":{"namespace":"n","name":"j"},"inputs":[{"namespace":"driftline","name":"temps@1"}],"outputs":[{"namespace":"driftline","name":"model:m@1"}]}`,
		`{"eventTime":"x","run":{"runId":1}}`)
}

// FuzzVersionMetadata fuzzes the metadata part of POST /api/v1/models/{name}/versions (with a
// small artifact), and the multipart framing around it.
func FuzzVersionMetadata(f *testing.F) {
	h := startHub(f, nil)
	h.pushDataset("temps", "")
	h.must(http.StatusCreated, "POST", "/api/v1/models", h.admin, api.CreateRequest{Name: "m"}, nil)
	for _, s := range []string{
		`{"trained_on":[{"dataset":"temps","version":1}],"metrics":{"auc":0.9},"params":{"depth":6},"code_ref":"git:abc","format":"onnx","tags":{"team":"risk"}}`,
		`{"trained_on":[{"dataset":"temps","version":2}]}`, `{"trained_on":[{"dataset":"","version":1}]}`,
		`{"metrics":{"auc":"high"}}`, `{"owner":"x"}`, `{}`, ``, `{`,
	} {
		f.Add([]byte(s), []byte("weights"))
	}
	f.Fuzz(func(t *testing.T, metadata, artifact []byte) {
		hh := h.with(t)
		r := hh.upload("/api/v1/models/m/versions", h.admin,
			part{name: "metadata", contentType: "application/json", data: bytes.NewReader(metadata)},
			part{name: "artifact", filename: "m.bin", data: bytes.NewReader(artifact)})
		checkAnswer(t, r)
		if r.code == http.StatusCreated {
			var mv state.ModelVersion
			r.decode(t, &mv)
			if mv.Size != int64(len(artifact)) {
				t.Fatalf("registered size %d for a %d-byte artifact", mv.Size, len(artifact))
			}
		}
	})
}

// FuzzRolloutRequest fuzzes the body of POST /api/v1/rollouts (the waves field has its own
// decoder, which takes a list or {"counts": [...]}).
func FuzzRolloutRequest(f *testing.F) {
	fuzzJSONRoute(f, "POST", "/api/v1/rollouts",
		`{"model":"m","version":1,"selector":"","waves":[1,10,50,100],"bake_seconds":0,"gates":{"max_failure_rate":0.1},"on_gate_failure":"rollback"}`,
		`{"model":"m","version":1,"waves":{"counts":[1]}}`, `{"model":"m","version":1,"waves":{"counts":[1],"x":2}}`,
		`{"model":"m","version":1,"waves":[]}`, `{"model":"m","version":1,"waves":[0,-5,1e308]}`,
		`{"model":"m","version":1,"selector":"site in (a"}`, `{"model":"m","version":2}`, `{"model":"","version":1}`)
}
