package pipeline_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"github.com/driftline/driftline/shared/contract"
	"github.com/driftline/driftline/shared/drift"
	"github.com/driftline/driftline/shared/profile"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/driftline/driftline/agent"
	"github.com/driftline/driftline/agent/config"
	"github.com/driftline/driftline/agent/devicedb"
	"github.com/driftline/driftline/agent/pipeline"
	"github.com/driftline/driftline/hub/node"
	"github.com/driftline/driftline/internal/testhelp"
	"github.com/driftline/driftline/shared/wire"
)

// TestAttachReportsReachTheHub runs a real agent with the pipeline attached the way
// `driftline-agent run` does, feeds it readings on its data topic (good and bad rows), and checks
// that its validation reports reach the hub's device state and its bad rows the quarantine.
func TestAttachReportsReachTheHub(t *testing.T) {
	dir := t.TempDir()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	hub, err := node.Start(context.Background(), node.Config{DataDir: filepath.Join(dir, "hub"), NodeID: "n1",
		HTTPAddr: "127.0.0.1:0", RaftAddr: "127.0.0.1:0", MQTTAddr: "127.0.0.1:0", Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	defer hub.Close()
	var admin string
	waitFor(t, "admin token", func() bool {
		b, err := os.ReadFile(hub.AdminTokenPath())
		admin = strings.TrimSpace(string(b))
		return err == nil && admin != ""
	})
	call := func(method, path string, body any, out any) int {
		var r io.Reader
		if body != nil {
			b, _ := json.Marshal(body)
			r = bytes.NewReader(b)
		}
		req, _ := http.NewRequest(method, hub.URL()+path, r)
		req.Header.Set("Authorization", "Bearer "+admin)
		req.Header.Set("Content-Type", "application/json")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		if out != nil {
			json.NewDecoder(res.Body).Decode(out)
		}
		return res.StatusCode
	}
	var dev struct {
		Token string `json:"token"`
	}
	if code := call(http.MethodPost, "/api/v1/devices", map[string]string{"id": "edge-1"}, &dev); code != http.StatusCreated {
		t.Fatalf("enroll: %d", code)
	}
	contract := filepath.Join(dir, "contract.json")
	os.WriteFile(contract, []byte(`{"fields":[{"name":"temp","type":"number","constraints":{"required":true,"maximum":100}}]}`), 0o600)

	var keys struct {
		Items []struct {
			PublicKey string `json:"public_key"`
		} `json:"items"`
	}
	waitFor(t, "the hub's signing key", func() bool {
		call(http.MethodGet, "/api/v1/keys", nil, &keys)
		return len(keys.Items) > 0
	})
	cfg := config.Default()
	cfg.TrustedKeys = []string{keys.Items[0].PublicKey}
	cfg.DeviceID, cfg.Token, cfg.Brokers = "edge-1", dev.Token, []string{hub.MQTTURL()}
	cfg.StateDir, cfg.ModelDir, cfg.Metrics = filepath.Join(dir, "state"), filepath.Join(dir, "models"), "127.0.0.1:0"
	cfg.Contract, cfg.Window.Rows = contract, 4
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
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() { cancel(); <-done }()

	// The device's firmware publishes readings on its data topic (as the device, another client id).
	c := paho.NewClient(paho.NewClientOptions().AddBroker(hub.MQTTURL()).SetClientID("edge-1:sensor").
		SetUsername("edge-1").SetPassword(dev.Token))
	if tk := c.Connect(); !tk.WaitTimeout(5*time.Second) || tk.Error() != nil {
		t.Fatalf("connect: %v", tk.Error())
	}
	defer c.Disconnect(100)
	waitFor(t, "the agent to subscribe", func() bool {
		tk := c.Publish(wire.Default().Data("edge-1"), 1, false, []byte(`[{"temp":20.5},{"temp":21},{"temp":500},{"temp":null}]`))
		tk.WaitTimeout(5 * time.Second)
		return pl.Stats().RecordsSeen >= 4
	})
	waitFor(t, "the validation report in the hub's device state", func() bool {
		var d struct {
			Health *struct {
				Rows    int64 `json:"rows"`
				Invalid int64 `json:"invalid"`
			} `json:"health"`
		}
		call(http.MethodGet, "/api/v1/devices/edge-1", nil, &d)
		return d.Health != nil && d.Health.Rows >= 4 && d.Health.Invalid >= 2
	})
	if s := pl.Stats(); s.RecordsInvalid < 2 || s.QuarantineDepth < 2 {
		t.Fatalf("invalid rows not quarantined: %+v", s)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testhelp.WaitFor(t, 15*time.Second, what, cond)
}

// TestDriftOptionsAgainstFullReference: against a reference profiling every contract field, the
// agent scores exactly what the contract asks (the rules the hub uses too).
func TestDriftOptionsAgainstFullReference(t *testing.T) {
	s, err := contract.Parse([]byte(`{"fields":[{"name":"t","type":"number","x-driftline":{"drift":{"method":"ks"}}},
	  {"name":"c","type":"string"},{"name":"y","type":"number","x-driftline":{"role":"label"}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	ref, err := profile.New(drift.Columns(s))
	if err != nil {
		t.Fatal(err)
	}
	got, ok, err := pipeline.DriftOptions(s, ref)
	want, werr := drift.ContractOptions(s)
	if err != nil || werr != nil || !ok || !reflect.DeepEqual(got, want) {
		t.Fatalf("agent options %+v (%v, %v), contract options %+v (%v)", got, ok, err, want, werr)
	}
	// A reference without a scored column (or of another kind) drops it.
	narrow, _ := profile.New([]profile.Column{{Name: "t", Kind: profile.Categorical}, {Name: "c", Kind: profile.Categorical}})
	if got, _, _ := pipeline.DriftOptions(s, narrow); !reflect.DeepEqual(got.Only, []string{"c"}) {
		t.Fatalf("scored %v, want [c]", got.Only)
	}
}

// TestContractWindowHonoured runs a real agent, pipeline attached as `driftline-agent run`
// attaches it, with no window in its config, against a real hub: the active model's contract
// asks for windows of 100 rows or 3 seconds, so 40 readings are scored for drift within about
// 3 seconds (not after the 60-second default), a client subscribed to the drift topic sees the
// report, and /metrics says the window came from the contract.
func TestContractWindowHonoured(t *testing.T) {
	dir := t.TempDir()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	hub, err := node.Start(context.Background(), node.Config{DataDir: filepath.Join(dir, "hub"), NodeID: "n1",
		HTTPAddr: "127.0.0.1:0", RaftAddr: "127.0.0.1:0", MQTTAddr: "127.0.0.1:0", Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	defer hub.Close()
	api := newAPI(t, hub)
	var dev struct {
		Token string `json:"token"`
	}
	api.call(http.MethodPost, "/api/v1/devices", map[string]string{"id": "edge-w"}, http.StatusCreated, &dev)
	var sample strings.Builder
	sample.WriteString("temp\n")
	for i := 0; i < 200; i++ {
		fmt.Fprintf(&sample, "%d\n", 20+i%10)
	}
	dsv := api.pushDataset("ds", `{"fields":[{"name":"temp","type":"number"}],"x-driftline":{"window":{"rows":100,"seconds":3}}}`, sample.String())
	mv := api.pushModel("m", []byte("a tiny model"), "ds", dsv)

	cfg := config.Default()
	cfg.TrustedKeys = api.keys()
	cfg.DeviceID, cfg.Token, cfg.Brokers = "edge-w", dev.Token, []string{hub.MQTTURL()}
	cfg.StateDir, cfg.ModelDir, cfg.Metrics = filepath.Join(dir, "state"), filepath.Join(dir, "models"), "127.0.0.1:0"
	db, err := devicedb.OpenInMemory()
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	reg := prometheus.NewRegistry()
	a, err := agent.New(cfg, db.Root(), agent.Options{Logger: logger, Registerer: reg, Gatherer: reg})
	if err != nil {
		t.Fatal(err)
	}
	pl, err := pipeline.Attach(a, pipeline.AttachOptions{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() { cancel(); <-done }()
	waitFor(t, "the agent online", a.Connected)
	api.call(http.MethodPut, "/api/v1/devices/edge-w/models/m", map[string]int{"version": mv}, http.StatusOK, nil)
	waitFor(t, "the model active", func() bool {
		ms, err := a.ActiveModels()
		return err == nil && len(ms) > 0 && ms[0].Version == mv
	})

	// A dashboard client (another connection of the device) watches the drift topic.
	drifts := make(chan []byte, 4)
	c := paho.NewClient(paho.NewClientOptions().AddBroker(hub.MQTTURL()).SetClientID("edge-w:dash").
		SetUsername("edge-w").SetPassword(dev.Token))
	if tk := c.Connect(); !tk.WaitTimeout(5*time.Second) || tk.Error() != nil {
		t.Fatalf("connect: %v", tk.Error())
	}
	defer c.Disconnect(100)
	if tk := c.Subscribe(wire.Default().Drift("edge-w"), 1, func(_ paho.Client, m paho.Message) {
		select {
		case drifts <- m.Payload():
		default:
		}
	}); !tk.WaitTimeout(5*time.Second) || tk.Error() != nil {
		t.Fatalf("subscribe: %v", tk.Error())
	}
	var rows strings.Builder
	rows.WriteString("[")
	for i := 0; i < 40; i++ {
		if i > 0 {
			rows.WriteString(",")
		}
		fmt.Fprintf(&rows, `{"temp":%d}`, 20+i%10)
	}
	rows.WriteString("]")
	waitFor(t, "the rows checked under the model's contract", func() bool {
		if pl.Schema() == nil || pl.Schema().Driftline.Window.Rows != 100 {
			return false
		}
		tk := c.Publish(wire.Default().Data("edge-w"), 1, false, []byte(rows.String()))
		tk.WaitTimeout(5 * time.Second)
		return pl.Stats().RecordsSeen >= 40
	})
	select {
	case b := <-drifts:
		d, err := wire.DecodeDrift(b)
		// 40 rows a publish, sent again until the agent's subscription took one: the window
		// closes at the contract's 3 seconds, or at its 100 rows.
		if err != nil || d.Rows < 40 || d.Rows > 100 || d.Model != "m" {
			t.Fatalf("drift report %+v (%v): %s", d, err, b)
		}
	case <-time.After(12 * time.Second):
		t.Fatal("no drift report within 12 s: the contract's 3-second window is not in force")
	}
	waitFor(t, "the metrics listener", func() bool { return a.MetricsAddr() != "" })
	body := api.get("http://" + a.MetricsAddr() + "/metrics")
	for _, want := range []string{
		pipeline.MetricWindowRowsLimit + `{source="contract"} 100`,
		pipeline.MetricWindowSecondsLimit + `{source="contract"} 3`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics has no %q", want)
		}
	}
}

// testAPI is the little of the hub API the tests call, as admin.
type testAPI struct {
	t     *testing.T
	url   string
	admin string
}

func newAPI(t *testing.T, hub *node.Node) *testAPI {
	t.Helper()
	api := &testAPI{t: t, url: hub.URL()}
	waitFor(t, "admin token", func() bool {
		b, err := os.ReadFile(hub.AdminTokenPath())
		api.admin = strings.TrimSpace(string(b))
		return err == nil && api.admin != ""
	})
	return api
}

func (h *testAPI) do(method, path string, r io.Reader, ct string, want int, out any) {
	h.t.Helper()
	req, _ := http.NewRequest(method, h.url+path, r)
	req.Header.Set("Authorization", "Bearer "+h.admin)
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != want {
		h.t.Fatalf("%s %s: %d %s", method, path, res.StatusCode, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			h.t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
}

func (h *testAPI) call(method, path string, body any, want int, out any) {
	h.t.Helper()
	b, _ := json.Marshal(body)
	h.do(method, path, bytes.NewReader(b), "application/json", want, out)
}

// get returns the body of a GET of a full URL (no token).
func (h *testAPI) get(u string) string {
	h.t.Helper()
	res, err := http.Get(u)
	if err != nil {
		h.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return string(b)
}

func (h *testAPI) keys() []string {
	h.t.Helper()
	var page struct {
		Items []struct {
			PublicKey string `json:"public_key"`
		} `json:"items"`
	}
	waitFor(h.t, "the hub's signing key", func() bool {
		h.call(http.MethodGet, "/api/v1/keys", nil, http.StatusOK, &page)
		return len(page.Items) > 0
	})
	return []string{page.Items[0].PublicKey}
}

// pushDataset creates dataset name with one version (contract and CSV sample).
func (h *testAPI) pushDataset(name, contractJSON, sampleCSV string) int {
	h.t.Helper()
	h.call(http.MethodPost, "/api/v1/datasets", map[string]any{"name": name}, http.StatusCreated, nil)
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	cw, _ := mw.CreateFormFile("contract", "contract.json")
	cw.Write([]byte(contractJSON))
	sw, _ := mw.CreateFormFile("sample", "sample.csv")
	sw.Write([]byte(sampleCSV))
	mw.Close()
	var dv struct{ Version int }
	h.do(http.MethodPost, "/api/v1/datasets/"+name+"/versions", &buf, mw.FormDataContentType(), http.StatusCreated, &dv)
	return dv.Version
}

// pushModel creates model name, registers artifact trained on dataset@dsVersion and approves it.
func (h *testAPI) pushModel(name string, artifact []byte, dataset string, dsVersion int) int {
	h.t.Helper()
	h.call(http.MethodPost, "/api/v1/models", map[string]any{"name": name}, http.StatusCreated, nil)
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	meta, _ := mw.CreateFormField("metadata")
	mb, _ := json.Marshal(map[string]any{"trained_on": []map[string]any{{"dataset": dataset, "version": dsVersion}}, "format": "test"})
	meta.Write(mb)
	fw, _ := mw.CreateFormFile("artifact", "model.bin")
	fw.Write(artifact)
	mw.Close()
	var mv struct{ Version int }
	h.do(http.MethodPost, "/api/v1/models/"+name+"/versions", &buf, mw.FormDataContentType(), http.StatusCreated, &mv)
	h.call(http.MethodPost, fmt.Sprintf("/api/v1/models/%s/versions/%d/approve", name, mv.Version), map[string]any{"comment": "test"}, http.StatusOK, nil)
	return mv.Version
}

// TestAttachQuarantineCaps: the quarantine bounds of agent.yaml reach the store Attach opens.
func TestAttachQuarantineCaps(t *testing.T) {
	dir := t.TempDir()
	contractPath := filepath.Join(dir, "contract.json")
	os.WriteFile(contractPath, []byte(`{"fields":[{"name":"temp","type":"number","constraints":{"maximum":100}}]}`), 0o600)
	cfg := config.Default()
	cfg.DeviceID, cfg.Token, cfg.Brokers = "edge-q", "t", []string{"tcp://127.0.0.1:1"}
	cfg.TrustedKeys = []string{"3q2+7wAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}
	cfg.StateDir, cfg.ModelDir, cfg.Metrics = filepath.Join(dir, "state"), filepath.Join(dir, "models"), config.MetricsOff
	cfg.Contract = contractPath
	cfg.Quarantine.MaxRows = 3
	db, err := devicedb.OpenInMemory()
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	a, err := agent.New(cfg, db.Root(), agent.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	pl, err := pipeline.Attach(a, pipeline.AttachOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pl.IngestPayload("mqtt", []byte(`[{"temp":500},{"temp":501},{"temp":502},{"temp":503},{"temp":504}]`)); err != nil {
		t.Fatal(err)
	}
	pl.Flush()
	if st := pl.Stats(); st.QuarantineDepth != 3 || st.QuarantineEvicted != 2 {
		t.Fatalf("quarantine %+v, want 3 rows held and 2 evicted (max_rows 3)", st)
	}
}
