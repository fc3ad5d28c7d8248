package outputs

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/driftline/driftline/agent/pipeline"
	"github.com/driftline/driftline/agent/quarantine"
	"github.com/driftline/driftline/shared/contract"
	"github.com/driftline/driftline/shared/contract/rows"
	"github.com/driftline/driftline/shared/outputs"
)

// POST /ingest?kind= and the data topic's {"kind","rows"} envelope reach the tracker; inputs
// still reach the pipeline; an unknown kind is 400, no output reference 503.
func TestKindsRouting(t *testing.T) {
	in, err := contract.Parse([]byte(`{"fields":[{"name":"x","type":"number"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	q, err := quarantine.Open(testNamespace(t), quarantine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	rep := &reporter{}
	pl, err := pipeline.New(pipeline.Options{DeviceID: "d1", Contract: in, Reporter: rep, Quarantine: q})
	if err != nil {
		t.Fatal(err)
	}
	oc, _ := outputs.ParseContract([]byte(jsContract))
	var val strings.Builder
	val.WriteString("id,pred,label\n")
	for i := range 100 {
		fmt.Fprintf(&val, "v%d,a,a\n", i)
	}
	ref, err := outputs.Build(oc, []byte(val.String()), rows.FormatCSV)
	if err != nil {
		t.Fatal(err)
	}
	enc, _ := ref.Encode()
	srv := httptest.NewServer(pl.Handler(0))
	defer srv.Close()
	post := func(query, header, body string) (int, pipeline.Summary) {
		req, _ := http.NewRequest("POST", srv.URL+pipeline.IngestPath+query, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/x-ndjson")
		if header != "" {
			req.Header.Set(pipeline.KindHeader, header)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var s pipeline.Summary
		var buf bytes.Buffer
		buf.ReadFrom(resp.Body)
		_ = json.Unmarshal(buf.Bytes(), &s)
		return resp.StatusCode, s
	}
	// Before a tracker is attached, predictions are an unknown kind.
	if code, _ := post("?kind=predictions", "", `{"id":"p1","pred":"a"}`); code != 400 {
		t.Fatalf("predictions without a tracker: %d", code)
	}
	m := &switchModel{}
	tr, err := New(Options{DeviceID: "d1", Reporter: rep, Model: m, State: testNamespace(t)})
	if err != nil {
		t.Fatal(err)
	}
	pl.SetKinds(tr)
	if code, _ := post("?kind=predictions", "", `{"id":"p1","pred":"a"}`); code != 503 {
		t.Fatalf("predictions without an output reference: %d", code)
	}
	m.ref = enc
	if code, s := post("?kind=predictions", "", "{\"id\":\"p1\",\"pred\":\"a\"}\n{\"id\":\"p2\",\"pred\":\"zz\",\"extra\":1}"); code != 200 || s.ValidRows != 1 || s.InvalidRows != 1 {
		t.Fatalf("predictions: %d %+v", code, s)
	}
	if code, s := post("", "labels", `{"id":"p1","label":"a"}`); code != 200 || s.ValidRows != 1 {
		t.Fatalf("labels by header: %d %+v", code, s)
	}
	if code, s := post("?kind=inputs", "", `{"x":1}`); code != 200 || s.ValidRows != 1 {
		t.Fatalf("inputs: %d %+v", code, s)
	}
	if code, _ := post("?kind=bogus", "", `{"x":1}`); code != 400 {
		t.Fatalf("bogus kind: %d", code)
	}
	// The data topic: an envelope goes to its kind; a plain object is an input row.
	if s, err := pl.IngestData("mqtt", []byte(`{"kind":"labels","rows":[{"id":"p9","label":"b"}]}`)); err != nil || s.ValidRows != 1 {
		t.Fatalf("envelope: %+v %v", s, err)
	}
	if s, err := pl.IngestData("mqtt", []byte(`{"x":2}`)); err != nil || s.ValidRows != 1 {
		t.Fatalf("plain input: %+v %v", s, err)
	}
	st := tr.JoinStats()
	if st.Joined != 1 || st.PendingLabels != 1 || st.PendingPredictions != 0 {
		t.Fatalf("join %+v", st)
	}
}

type switchModel struct{ ref []byte }

func (m *switchModel) Output() (string, int, []byte, bool) { return "m", 1, m.ref, m.ref != nil }
