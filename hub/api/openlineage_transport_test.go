package api_test

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/driftline/driftline/hub/api"
	"github.com/driftline/driftline/hub/state"
)

// loadEvents reads a producer-shaped fixture: a JSON array of RunEvents.
func loadEvents(t *testing.T, name string) []json.RawMessage {
	t.Helper()
	b, err := os.ReadFile("testdata/openlineage/producers/" + name)
	if err != nil {
		t.Fatal(err)
	}
	var evs []json.RawMessage
	if err := json.Unmarshal(b, &evs); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return evs
}

func gzipped(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// olPost posts body as the OpenLineage HTTP transport does: OPENLINEAGE_URL + the endpoint,
// Content-Type application/json, the API key as a Bearer token, and Content-Encoding gzip when
// the transport's compression is on.
func (h *testHub) olPost(path, token string, body []byte, encoding string) response {
	h.t.Helper()
	req, err := http.NewRequest(http.MethodPost, h.url+path, bytes.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	if encoding != "" {
		req.Header.Set("Content-Encoding", encoding)
	}
	res, err := h.client.Do(req)
	if err != nil {
		h.t.Fatalf("POST %s: %v", path, err)
	}
	defer res.Body.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(res.Body); err != nil {
		h.t.Fatal(err)
	}
	return response{code: res.StatusCode, header: res.Header, body: buf.Bytes()}
}

// jobNode reads one job node of the lineage graph and the edges around it.
func (h *testHub) jobNode(t *testing.T, job string) (state.LineageNode, []string) {
	t.Helper()
	var g state.Graph
	h.must(http.StatusOK, "GET", "/api/v1/lineage?depth=1&node="+url.QueryEscape(job), h.admin, nil, &g)
	for _, n := range g.Nodes {
		if n.ID == job {
			return n, edgeSet(g)
		}
	}
	t.Fatalf("lineage has no node %s: %+v", job, g)
	return state.LineageNode{}, nil
}

// TestOpenLineageHTTPTransport drives the hub as an unmodified OpenLineage client pointed at it
// (OPENLINEAGE_URL = the hub, the API key a publisher token): POST /api/v1/lineage, one event
// per request, plain or gzip; and JSON arrays of events (the batch shape) at /api/v1/lineage and
// /api/v1/lineage/batch. The events are shaped like dbt's (a dbt_run run facet, no datasets) and
// Flink's (a streaming job reading Kafka and writing JDBC), START to COMPLETE or FAIL for one
// runId.
func TestOpenLineageHTTPTransport(t *testing.T) {
	h := startHub(t, nil)
	pub := h.token("ol-client", state.RolePublisher)

	dbt := loadEvents(t, "dbt_run.json")
	// One event per request: the first plain, the others gzip-compressed.
	for i, ev := range dbt {
		body, enc := []byte(ev), ""
		if i > 0 {
			body, enc = gzipped(t, ev), "gzip"
		}
		r := h.olPost("/api/v1/lineage", pub, body, enc)
		if r.code != http.StatusCreated {
			t.Fatalf("dbt event %d (encoding %q): %d %s", i, enc, r.code, r.body)
		}
	}
	n, edges := h.jobNode(t, "job:dbt/dbt-run-sensor_marts")
	if n.Attr["last_event"] != "COMPLETE" || n.Attr["last_run_id"] != "0191f6a1-3c1e-7a40-9d3e-2f6b4c8e1a01" {
		t.Errorf("dbt job after START, RUNNING, COMPLETE = %+v", n.Attr)
	}
	if len(edges) != 0 {
		t.Errorf("dbt run with no datasets has edges %v", edges)
	}

	// The Flink run as one gzip batch (a JSON array) at /api/v1/lineage.
	flink := loadEvents(t, "flink_streaming.json")
	batch, _ := json.Marshal(flink)
	r := h.olPost("/api/v1/lineage", pub, gzipped(t, batch), "gzip")
	if r.code != http.StatusCreated {
		t.Fatalf("flink batch: %d %s", r.code, r.body)
	}
	var res struct {
		Accepted int `json:"accepted"`
	}
	r.decode(t, &res)
	if res.Accepted != 3 {
		t.Errorf("flink batch accepted %d events, want 3: %s", res.Accepted, r.body)
	}
	job := "job:flink-jobs/sensor-readings-to-warehouse"
	n, edges = h.jobNode(t, job)
	if n.Attr["last_event"] != "FAIL" || n.Attr["last_run_id"] != "0191f6b7-8a20-7c11-b2e4-5d9a0c3f6e02" {
		t.Errorf("flink job after START, RUNNING, FAIL (applied in order) = %+v", n.Attr)
	}
	want := []string{
		job + " -consumed-> dataset:kafka://kafka-1.plant.local:9092/sensor-readings",
		job + " -produced-> dataset:postgres://warehouse.plant.local:5432/analytics.public.sensor_readings",
	}
	if !slices.Equal(edges, want) {
		t.Errorf("flink edges = %v, want %v", edges, want)
	}

	// The batch endpoint: a plain JSON array.
	one, _ := json.Marshal([]json.RawMessage{dbt[0]})
	if r := h.olPost("/api/v1/lineage/batch", pub, one, ""); r.code != http.StatusCreated {
		t.Errorf("POST /api/v1/lineage/batch: %d %s", r.code, r.body)
	}
	// The original path takes the same bodies.
	if r := h.olPost("/api/v1/openlineage", pub, gzipped(t, dbt[2]), "gzip"); r.code != http.StatusCreated {
		t.Errorf("POST /api/v1/openlineage gzip: %d %s", r.code, r.body)
	}
	// A viewer may read lineage but not post events.
	viewer := h.token("ol-viewer", state.RoleViewer)
	wantProblem(t, h.olPost("/api/v1/lineage", viewer, []byte(dbt[0]), ""), http.StatusForbidden, "")
}

// TestOpenLineageBodiesRefused: a batch with one bad event is refused whole, naming the event;
// a gzip bomb is refused with 413 after reading at most the body limit; broken gzip is 400 and
// an encoding the hub does not speak 415; the spec's static DatasetEvent and JobEvent are
// refused with a message that says so.
func TestOpenLineageBodiesRefused(t *testing.T) {
	h := startHub(t, nil)
	pub := h.token("ol-client", state.RolePublisher)
	flink := loadEvents(t, "flink_streaming.json")

	var bad map[string]any
	if err := json.Unmarshal(flink[1], &bad); err != nil {
		t.Fatal(err)
	}
	bad["run"] = map[string]any{"runId": "not-a-uuid"}
	badJSON, _ := json.Marshal(bad)
	batch, _ := json.Marshal([]json.RawMessage{flink[0], badJSON, flink[2]})
	p := wantProblem(t, h.olPost("/api/v1/lineage", pub, batch, ""), http.StatusBadRequest, "[1].run.runId")
	if !strings.Contains(p.Detail, "event 1") {
		t.Errorf("detail %q does not name event 1", p.Detail)
	}
	if r := h.do("GET", "/api/v1/lineage?node="+url.QueryEscape("job:flink-jobs/sensor-readings-to-warehouse"), h.admin, nil); r.code != http.StatusNotFound {
		t.Errorf("after a refused batch the job node answers %d, want 404 (nothing written): %s", r.code, r.body)
	}
	wantProblem(t, h.olPost("/api/v1/lineage", pub, []byte(`[]`), ""), http.StatusBadRequest, "")

	// 64 MiB of zeros compress to about 64 KiB: far under the body limit, far over it inflated.
	bomb := gzipped(t, make([]byte, 64<<20))
	if p := wantProblem(t, h.olPost("/api/v1/lineage", pub, bomb, "gzip"), http.StatusRequestEntityTooLarge, ""); p.Type != api.ProblemTooLarge {
		t.Errorf("gzip bomb: problem type %q, want %q", p.Type, api.ProblemTooLarge)
	}
	wantProblem(t, h.olPost("/api/v1/lineage", pub, []byte("\x1f\x8b not gzip at all"), "gzip"), http.StatusBadRequest, "")
	trunc := gzipped(t, flink[0])
	wantProblem(t, h.olPost("/api/v1/lineage", pub, trunc[:len(trunc)/2], "gzip"), http.StatusBadRequest, "")
	wantProblem(t, h.olPost("/api/v1/lineage", pub, []byte(flink[0]), "br"), http.StatusUnsupportedMediaType, "")

	dsEvent := `{"eventTime":"2026-03-02T09:15:00Z","producer":"https://example.com/p","schemaURL":"https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/DatasetEvent","dataset":{"namespace":"kafka://k:9092","name":"t"}}`
	p = wantProblem(t, h.olPost("/api/v1/lineage", pub, []byte(dsEvent), ""), http.StatusBadRequest, "")
	if !strings.Contains(p.Detail, "DatasetEvent") {
		t.Errorf("a DatasetEvent is refused with %q, which does not name it", p.Detail)
	}
	jobEvent := `{"eventTime":"2026-03-02T09:15:00Z","producer":"https://example.com/p","schemaURL":"https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/JobEvent","job":{"namespace":"n","name":"j"},"inputs":[],"outputs":[]}`
	p = wantProblem(t, h.olPost("/api/v1/lineage", pub, []byte(jobEvent), ""), http.StatusBadRequest, "")
	if !strings.Contains(p.Detail, "JobEvent") {
		t.Errorf("a JobEvent is refused with %q, which does not name it", p.Detail)
	}
}
