package outputs_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/driftline/driftline/agent"
	"github.com/driftline/driftline/agent/config"
	"github.com/driftline/driftline/agent/devicedb"
	"github.com/driftline/driftline/agent/outputs"
	"github.com/driftline/driftline/agent/pipeline"
	"github.com/driftline/driftline/hub/node/nodetest"
	hubstate "github.com/driftline/driftline/hub/state"
	"github.com/driftline/driftline/internal/testhelp"
)

// A real hub and agent: the version's output reference travels with it (desired output_digest,
// fetched by the agent), predictions and labels posted to the agent's /ingest become
// prediction_drift and performance reports, and the hub shows them on the device.
func TestOutputsReachTheHub(t *testing.T) {
	dir := t.TempDir()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	h := nodetest.Start(t)
	hub, admin := h.Node, h.Token
	send := func(method, path, ct string, body io.Reader, out any) int {
		req, _ := http.NewRequest(method, hub.URL()+path, body)
		req.Header.Set("Authorization", "Bearer "+admin)
		req.Header.Set("Content-Type", ct)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		if out != nil {
			_ = json.Unmarshal(b, out)
		}
		if res.StatusCode >= 300 {
			t.Logf("%s %s: %d %s", method, path, res.StatusCode, b)
		}
		return res.StatusCode
	}
	call := func(method, path string, body any, out any) int {
		b, _ := json.Marshal(body)
		return send(method, path, "application/json", bytes.NewReader(b), out)
	}
	multi := func(method, path string, fields map[string]string, file, name string, data []byte) int {
		var buf bytes.Buffer
		mw := multipart.NewWriter(&buf)
		for k, v := range fields {
			mw.WriteField(k, v)
		}
		fw, _ := mw.CreateFormFile(file, name)
		fw.Write(data)
		mw.Close()
		return send(method, path, mw.FormDataContentType(), &buf, nil)
	}
	if call("POST", "/api/v1/models", map[string]string{"name": "clf"}, nil) != 201 ||
		multi("POST", "/api/v1/models/clf/versions", map[string]string{"metadata": "{}"}, "artifact", "m.bin", []byte("weights")) != 201 {
		t.Fatal("push model")
	}
	var val strings.Builder
	val.WriteString("id,pred,label\n")
	for i := range 300 {
		c := []string{"a", "b", "c"}[i%3]
		fmt.Fprintf(&val, "v%d,%s,%s\n", i, c, c) // a perfect validation set: accuracy 1
	}
	contract := `{"primaryKey":["id"],"fields":[{"name":"id","type":"string"},
	 {"name":"pred","type":"string","x-driftline":{"role":"prediction"}},{"name":"label","type":"string","x-driftline":{"role":"label"}}]}`
	if code := multi("PUT", "/api/v1/models/clf/versions/1/outputs", map[string]string{"contract": contract}, "sample", "val.csv", []byte(val.String())); code != 200 {
		t.Fatalf("outputs: %d", code)
	}
	if call("POST", "/api/v1/models/clf/versions/1/approve", map[string]string{"comment": "ok"}, nil) != 200 {
		t.Fatal("approve")
	}
	var dev struct {
		Token string `json:"token"`
	}
	call("POST", "/api/v1/devices", map[string]string{"id": "edge-1"}, &dev)
	call("PUT", "/api/v1/devices/edge-1/models/clf", map[string]int{"version": 1}, nil)
	cfg := config.Default()
	cfg.TrustedKeys = h.Keys()
	cfg.DeviceID, cfg.Token, cfg.Brokers = "edge-1", dev.Token, []string{hub.MQTTURL()}
	cfg.StateDir, cfg.ModelDir, cfg.Metrics = filepath.Join(dir, "state"), filepath.Join(dir, "models"), "127.0.0.1:0"
	cfg.Window.Rows = 90
	db, err := devicedb.OpenInMemory()
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	a, err := agent.New(cfg, db.Root(), agent.Options{Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	pl, err := pipeline.Attach(a, pipeline.AttachOptions{Ingest: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := outputs.Attach(a, pl, nil); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() { cancel(); <-done }()
	testhelp.WaitFor(t, 30*time.Second, "the output reference on the agent", func() bool {
		ms, _ := a.ActiveModels()
		return len(ms) > 0 && len(ms[0].Output) > 0
	})
	ingest := func(kind, body string) {
		t.Helper()
		req, _ := http.NewRequest("POST", "http://"+a.MetricsAddr()+"/ingest?kind="+kind, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/x-ndjson")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 {
			t.Fatalf("ingest %s: %d %s", kind, res.StatusCode, b)
		}
	}
	// The hub attributes a prediction profile to the versions the device reports active: wait
	// until its record says so (reported states reach it in batches).
	testhelp.WaitFor(t, 30*time.Second, "clf@1 active on the hub's device record", func() bool {
		var d hubstate.Device
		call("GET", "/api/v1/devices/edge-1", nil, &d)
		m, ok := d.Reported.Models["clf"]
		return ok && m.Active != nil && *m.Active == 1
	})
	// Labels first (they wait for their predictions), then 90 predictions closing one window:
	// every prediction is "a" (drifted from a uniform reference), 60 labelled, 30 right.
	var labels, preds strings.Builder
	for i := range 90 {
		fmt.Fprintf(&preds, "{\"id\":\"p%d\",\"pred\":\"a\"}\n", i)
		if i < 60 {
			fmt.Fprintf(&labels, "{\"id\":\"p%d\",\"label\":%q}\n", i, []string{"a", "b"}[i%2])
		}
	}
	ingest("labels", labels.String())
	ingest("predictions", preds.String())
	var d hubstate.Device
	testhelp.WaitFor(t, 30*time.Second, "outputs on the hub's device", func() bool {
		call("GET", "/api/v1/devices/edge-1", nil, &d)
		return d.Outputs != nil && d.Outputs.Labels == 60 && d.Outputs.PredictionWindows == 1
	})
	if !d.Outputs.PredictionDrift || d.Outputs.Relative != 0.5 || d.Outputs.Metric != "accuracy" || d.Outputs.Version != 1 {
		t.Fatalf("device outputs %+v", d.Outputs)
	}
	// The window's prediction profile reached the hub's fleet view of predictions: merged (one
	// device here) and scored against the output reference.
	var fleet struct {
		Reference *struct {
			Output string `json:"output"`
		} `json:"reference"`
		Current *struct {
			Devices  int    `json:"devices"`
			Rows     uint64 `json:"rows"`
			Features map[string]struct {
				Drift bool `json:"drift"`
			} `json:"features"`
		} `json:"current"`
	}
	testhelp.WaitFor(t, 30*time.Second, "the fleet view of predictions", func() bool {
		call("GET", "/api/v1/drift/predictions?model=clf&version=1", nil, &fleet)
		return fleet.Current != nil && fleet.Current.Rows == 90
	})
	if fleet.Reference == nil || fleet.Reference.Output == "" || fleet.Current.Devices != 1 || !fleet.Current.Features["pred"].Drift {
		t.Fatalf("fleet view of predictions: reference %+v, current %+v", fleet.Reference, fleet.Current)
	}
}
