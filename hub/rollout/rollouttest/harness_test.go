package rollouttest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/driftline/driftline/agent"
	"github.com/driftline/driftline/agent/config"
	"github.com/driftline/driftline/agent/devicedb"
	"github.com/driftline/driftline/agent/modelstore"
	"github.com/driftline/driftline/agent/pipeline"
	"github.com/driftline/driftline/hub/node"
	"github.com/driftline/driftline/hub/state"
	"github.com/driftline/driftline/internal/testhelp"
	"github.com/driftline/driftline/shared/wire"
)

// testWriter sends log lines to t.Log until the test ends (goroutines may log after).
type testWriter struct {
	t  testing.TB
	mu *sync.Mutex
	on *bool
}

func (w testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if *w.on {
		w.t.Log(strings.TrimSpace(string(p)))
	}
	return len(p), nil
}

func testLogger(t testing.TB, level slog.Level) *slog.Logger {
	mu, on := &sync.Mutex{}, true
	t.Cleanup(func() { mu.Lock(); on = false; mu.Unlock() })
	return slog.New(slog.NewTextHandler(testWriter{t, mu, &on}, &slog.HandlerOptions{Level: level}))
}

// waitFor polls cond until it holds, failing the test after d.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	testhelp.WaitFor(t, d, what, cond)
}

// hub is a hub node (one of a cluster, or alone) and the admin token of its cluster.
type hub struct {
	t   testing.TB
	n   *node.Node
	tok string
}

// startHub starts a one-node hub with the embedded broker on free ports.
func startHub(t testing.TB) *hub {
	t.Helper()
	dir := t.TempDir()
	n, err := node.Start(context.Background(), node.Config{DataDir: dir, NodeID: "n1", HTTPAddr: "127.0.0.1:0",
		RaftAddr: "127.0.0.1:0", MQTTAddr: "127.0.0.1:0", Logger: testLogger(t, slog.LevelWarn)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	h := &hub{t: t, n: n}
	waitFor(t, 20*time.Second, "admin token", func() bool {
		b, err := os.ReadFile(n.AdminTokenPath())
		h.tok = strings.TrimSpace(string(b))
		return err == nil && h.tok != ""
	})
	return h
}

// call sends a JSON request and decodes the answer into out; it fails the test unless the
// status is want, and returns the body.
func (h *hub) call(method, path string, body any, want int, out any) []byte {
	h.t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, h.n.URL()+path, r)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return h.do(req, want, out)
}

func (h *hub) do(req *http.Request, want int, out any) []byte {
	h.t.Helper()
	req.Header.Set("Authorization", "Bearer "+h.tok)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != want {
		h.t.Fatalf("%s %s: got %d want %d: %s", req.Method, req.URL.Path, res.StatusCode, want, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			h.t.Fatalf("decode %s: %v", b, err)
		}
	}
	return b
}

// multipartPost posts fields and one file as multipart/form-data.
func (h *hub) multipartPost(path string, fields map[string]string, fileField, fileName string, file []byte, want int, out any) {
	h.t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for k, v := range fields {
		mw.WriteField(k, v)
	}
	fw, _ := mw.CreateFormFile(fileField, fileName)
	fw.Write(file)
	mw.Close()
	req, _ := http.NewRequest(http.MethodPost, h.n.URL()+path, &buf)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	h.do(req, want, out)
}

// pushDataset creates dataset name and pushes a version with contract and a CSV sample (from
// which the hub computes the reference profile).
func (h *hub) pushDataset(name, contractDoc, sampleCSV string) int {
	h.t.Helper()
	h.call(http.MethodPost, "/api/v1/datasets", map[string]string{"name": name}, http.StatusCreated, nil)
	var out struct {
		Version int `json:"version"`
	}
	h.multipartPost("/api/v1/datasets/"+name+"/versions", map[string]string{"contract": contractDoc}, "sample", "sample.csv", []byte(sampleCSV), http.StatusCreated, &out)
	return out.Version
}

// pushModel registers a version of model (creating the model first when first is set), trained
// on dataset@1 when dataset is not empty, and approves it when approve is set.
func (h *hub) pushModel(model string, first bool, weights, dataset string, approve bool) int {
	h.t.Helper()
	if first {
		h.call(http.MethodPost, "/api/v1/models", map[string]string{"name": model}, http.StatusCreated, nil)
	}
	meta := `{"format":"onnx"}`
	if dataset != "" {
		meta = fmt.Sprintf(`{"format":"onnx","trained_on":[{"dataset":%q,"version":1}]}`, dataset)
	}
	var out struct {
		Version int `json:"version"`
	}
	// A few KiB: a chunk under 256 bytes is stored without a zstd frame content size, which
	// the hub's chunk server refuses (see DESIGN.md).
	art := bytes.Repeat([]byte(weights), 4096/len(weights)+1)
	h.multipartPost("/api/v1/models/"+model+"/versions", map[string]string{"metadata": meta}, "artifact", "model.bin", art, http.StatusCreated, &out)
	if approve {
		h.call(http.MethodPost, fmt.Sprintf("/api/v1/models/%s/versions/%d/approve", model, out.Version), map[string]string{"comment": "ok"}, http.StatusOK, nil)
	}
	return out.Version
}

// enroll adds a device with labels and returns its token.
func (h *hub) enroll(id string, labels map[string]string) string {
	h.t.Helper()
	var dev struct {
		Token string `json:"token"`
	}
	h.call(http.MethodPost, "/api/v1/devices", map[string]any{"id": id, "labels": labels}, http.StatusCreated, &dev)
	return dev.Token
}

// keys returns the hub's public signing keys as the agent config lists them.
func (h *hub) keys() []string {
	h.t.Helper()
	var out []string
	waitFor(h.t, 10*time.Second, "the hub's signing key", func() bool {
		var page struct {
			Items []struct {
				PublicKey string `json:"public_key"`
			} `json:"items"`
		}
		h.call(http.MethodGet, "/api/v1/keys", nil, http.StatusOK, &page)
		out = out[:0]
		for _, k := range page.Items {
			out = append(out, k.PublicKey)
		}
		return len(out) > 0
	})
	return out
}

// rolloutReq is the body of POST /api/v1/rollouts.
type rolloutReq struct {
	Model         string             `json:"model"`
	Version       int                `json:"version"`
	Selector      string             `json:"selector,omitempty"`
	Waves         any                `json:"waves"`
	BakeSeconds   int                `json:"bake_seconds"`
	Gates         map[string]float64 `json:"gates,omitempty"`
	OnGateFailure string             `json:"on_gate_failure,omitempty"`
	DeviceTimeout int                `json:"device_timeout_seconds,omitempty"`
	SetAlias      string             `json:"set_alias,omitempty"`
}

// startRollout creates a rollout and returns its id.
func (h *hub) startRollout(req rolloutReq) string {
	h.t.Helper()
	var out struct {
		ID string `json:"id"`
	}
	h.call(http.MethodPost, "/api/v1/rollouts", req, http.StatusCreated, &out)
	if out.ID == "" {
		h.t.Fatal("rollout created without an id")
	}
	return out.ID
}

// rollout reads a rollout through the API.
func (h *hub) rollout(id string) state.Rollout {
	h.t.Helper()
	var r state.Rollout
	h.call(http.MethodGet, "/api/v1/rollouts/"+id, nil, http.StatusOK, &r)
	return r
}

// waitState waits until rollout id is in state want, failing early if it ends in another.
func (h *hub) waitState(id, want string, d time.Duration) state.Rollout {
	h.t.Helper()
	var r state.Rollout
	waitFor(h.t, d, "rollout "+id+" "+want, func() bool {
		r = h.rollout(id)
		if r.State != want && r.State != state.RolloutRunning && r.State != state.RolloutPaused {
			h.t.Fatalf("rollout %s ended %s (%s), want %s; gates %+v", id, r.State, r.Reason, want, r.GateValues)
		}
		return r.State == want
	})
	return r
}

// rolloutDevices lists a rollout's devices through the API.
func (h *hub) rolloutDevices(id string) map[string]state.RolloutDevice {
	h.t.Helper()
	var page state.Page[state.RolloutDevice]
	h.call(http.MethodGet, "/api/v1/rollouts/"+id+"/devices", nil, http.StatusOK, &page)
	out := map[string]state.RolloutDevice{}
	for _, d := range page.Items {
		out[d.ID] = d
	}
	return out
}

// audit returns the audit entries about rollout id, oldest first.
func (h *hub) audit(id string) []state.AuditEntry {
	h.t.Helper()
	var out []state.AuditEntry
	cursor := ""
	for {
		page, err := h.n.Reader().Audit(state.AuditFilter{}, cursor, state.MaxLimit)
		if err != nil {
			h.t.Fatal(err)
		}
		for _, e := range page.Items {
			if e.Object == state.RolloutNode(id) {
				out = append(out, e)
			}
		}
		if page.NextCursor == nil {
			return out
		}
		cursor = *page.NextCursor
	}
}

// reportedActive is the version the hub's device state says id runs of model (0: none): active,
// or rolled_back (the agent went back to the version it ran before, which it now runs).
func (h *hub) reportedActive(id, model string) int {
	h.t.Helper()
	d, err := h.n.Reader().Device(id)
	if err != nil {
		h.t.Fatal(err)
	}
	if m, ok := d.Reported.Models[model]; ok && m.Active != nil && (m.State == state.DevActive || m.State == state.DevRolledBack || m.State == "") {
		return *m.Active
	}
	return 0
}

// fleet is a set of real agents in this process on one shared state database (as
// firmware-sim's fleet mode runs them), each with its own model directory.
type fleet struct {
	t    testing.TB
	h    *hub
	db   *devicedb.DB
	dir  string
	keys []string
	mu   sync.Mutex
	devs map[string]*device
}

// device is one enrolled device and, once started, its agent.
type device struct {
	id, token string
	modelDir  string
	// health is the script the agent's health check runs (empty: no health check).
	health string
	a      *agent.Agent
	pl     *pipeline.Pipeline
	cancel context.CancelFunc
	done   chan error
	sensor paho.Client
}

func newFleet(t testing.TB, h *hub) *fleet {
	t.Helper()
	dir := t.TempDir()
	db, err := devicedb.Open(filepath.Join(dir, "db"))
	if err != nil {
		t.Fatal(err)
	}
	f := &fleet{t: t, h: h, db: db, dir: dir, keys: h.keys(), devs: map[string]*device{}}
	t.Cleanup(f.close)
	return f
}

// enroll adds device id to the hub without starting its agent.
func (f *fleet) enroll(id string, labels map[string]string) *device {
	f.t.Helper()
	d := &device{id: id, token: f.h.enroll(id, labels), modelDir: filepath.Join(f.dir, "models", id)}
	f.mu.Lock()
	f.devs[id] = d
	f.mu.Unlock()
	return d
}

// agentOpts are per-device agent settings.
type agentOpts struct {
	// healthOK: nil means no health check; otherwise the health check runs a script that
	// passes or fails as given (setHealth rewrites it).
	healthOK *bool
	// windowRows is the pipeline's window (default 10,000: no window closes by rows).
	windowRows int
}

// start runs d's agent with the pipeline attached as `driftline-agent run` attaches it.
func (f *fleet) start(d *device, o agentOpts) {
	f.t.Helper()
	c := config.Default()
	c.DeviceID, c.Token, c.Brokers, c.TrustedKeys = d.id, d.token, []string{f.h.n.MQTTURL()}, f.keys
	c.StateDir, c.ModelDir, c.Metrics = filepath.Join(f.dir, "db"), d.modelDir, config.MetricsOff
	c.Heartbeat = config.Duration(time.Second)
	c.Fetch.Timeout = config.Duration(2 * time.Second)
	c.Fetch.Retry = config.Duration(time.Second)
	if o.windowRows > 0 {
		c.Window.Rows = o.windowRows
	}
	if o.healthOK != nil {
		d.health = filepath.Join(f.dir, d.id+"-health.sh")
		f.setHealth(d, *o.healthOK)
		c.HealthCheck.Command = []string{"sh", d.health}
		c.HealthCheck.Timeout = config.Duration(5 * time.Second)
	}
	reg := prometheus.NewRegistry()
	a, err := agent.New(c, f.db.Namespace(d.id), agent.Options{Logger: testLogger(f.t, slog.LevelWarn).With("device", d.id),
		Registerer: reg, Gatherer: reg, NoRSSGauge: true})
	if err != nil {
		f.t.Fatal(err)
	}
	pl, err := pipeline.Attach(a, pipeline.AttachOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	d.a, d.pl, d.cancel, d.done = a, pl, cancel, make(chan error, 1)
	go func() { d.done <- a.Run(ctx) }()
}

// startAll enrolls n devices named prefix-NN with labels and starts their agents.
func (f *fleet) startAll(prefix string, n int, labels map[string]string, o agentOpts) []*device {
	f.t.Helper()
	out := make([]*device, n)
	for i := range n {
		out[i] = f.enroll(fmt.Sprintf("%s-%02d", prefix, i), labels)
		f.start(out[i], o)
	}
	f.waitConnected(out)
	return out
}

func (f *fleet) waitConnected(devs []*device) {
	f.t.Helper()
	waitFor(f.t, 20*time.Second, "agents connected", func() bool {
		for _, d := range devs {
			if !d.a.Connected() {
				return false
			}
		}
		return true
	})
}

// setHealth rewrites d's health-check script to pass or fail.
func (f *fleet) setHealth(d *device, ok bool) {
	f.t.Helper()
	code := 1
	if ok {
		code = 0
	}
	if err := os.WriteFile(d.health, fmt.Appendf(nil, "#!/bin/sh\nexit %d\n", code), 0o700); err != nil {
		f.t.Fatal(err)
	}
}

// current is the version MODELDIR/model/current points at on d (0: none).
func (d *device) current(t testing.TB, model string) int {
	t.Helper()
	target, err := os.Readlink(filepath.Join(d.modelDir, model, modelstore.CurrentLink))
	if os.IsNotExist(err) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	v, err := strconv.Atoi(filepath.Base(target))
	if err != nil {
		t.Fatalf("%s: current link %q: %v", d.id, target, err)
	}
	return v
}

// activeVersion is the version d's agent runs of model, from the agent itself (0: none).
func (d *device) activeVersion(model string) int {
	ms, _ := d.a.ActiveModels()
	for _, m := range ms {
		if m.Name == model {
			return m.Version
		}
	}
	return 0
}

// publish sends rows on d's data topic as the device's firmware does (its own MQTT client
// with the device's credentials).
func (f *fleet) publish(d *device, rows []byte) error {
	if d.sensor == nil {
		c := paho.NewClient(paho.NewClientOptions().AddBroker(f.h.n.MQTTURL()).SetClientID(d.id + ":sensor").
			SetUsername(d.id).SetPassword(d.token))
		if tk := c.Connect(); !tk.WaitTimeout(5*time.Second) || tk.Error() != nil {
			return fmt.Errorf("connect %s sensor: %v", d.id, tk.Error())
		}
		d.sensor = c
	}
	tk := d.sensor.Publish(wire.Default().Data(d.id), 1, false, rows)
	if !tk.WaitTimeout(5 * time.Second) {
		return fmt.Errorf("publish to %s timed out", d.id)
	}
	return tk.Error()
}

// feed publishes a batch of rows from gen every 100 ms to every device of devs whose agent
// runs model@version, until the test ends.
func (f *fleet) feed(devs []*device, model string, version int, gen func(i int) string, batch int) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	f.t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		n := 0
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			var b strings.Builder
			b.WriteString("[")
			for i := range batch {
				if i > 0 {
					b.WriteString(",")
				}
				b.WriteString(gen(n + i))
			}
			b.WriteString("]")
			n += batch
			for _, d := range devs {
				if d.activeVersion(model) == version {
					if err := f.publish(d, []byte(b.String())); err != nil && ctx.Err() == nil {
						f.t.Logf("feed %s: %v", d.id, err)
					}
				}
			}
		}
	}()
}

func (f *fleet) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, d := range f.devs {
		if d.sensor != nil {
			d.sensor.Disconnect(50)
		}
		if d.cancel != nil {
			d.cancel()
			<-d.done
		}
	}
	f.db.Close()
}

// sensorContract is the contract of the test dataset: two numeric features with bounds.
const sensorContract = `{"fields":[
  {"name":"temp","type":"number","constraints":{"required":true,"minimum":-40,"maximum":125}},
  {"name":"hum","type":"number","constraints":{"required":true,"minimum":0,"maximum":100}}
]}`

// sensorValues is reading i of the reference distribution.
func sensorValues(i int) (temp, hum float64) {
	return 20 + 5*math.Sin(float64(i)/7) + float64(i%11)/10, 50 + 10*math.Cos(float64(i)/5) + float64(i%7)/10
}

// sensorCSV is n reference rows as CSV.
func sensorCSV(n int) string {
	var b strings.Builder
	b.WriteString("temp,hum\n")
	for i := range n {
		t, h := sensorValues(i)
		fmt.Fprintf(&b, "%g,%g\n", t, h)
	}
	return b.String()
}

// normalRow, shiftedRow and invalidRow generate readings: like the reference, with both means
// shifted far, and with every other temperature above the contract's maximum.
func normalRow(i int) string {
	t, h := sensorValues(i)
	return fmt.Sprintf(`{"temp":%g,"hum":%g}`, t, h)
}

func shiftedRow(i int) string {
	t, h := sensorValues(i)
	return fmt.Sprintf(`{"temp":%g,"hum":%g}`, t+30, h+25)
}

func invalidRow(i int) string {
	t, h := sensorValues(i)
	if i%2 == 0 {
		t = 500
	}
	return fmt.Sprintf(`{"temp":%g,"hum":%g}`, t, h)
}

// waitActive waits until every device runs model@version, by the agent's model dir and by the
// hub's device state.
func (f *fleet) waitActive(devs []*device, model string, version int, d time.Duration) {
	f.t.Helper()
	waitFor(f.t, d, fmt.Sprintf("%d devices on %s@%d", len(devs), model, version), func() bool {
		for _, dev := range devs {
			if dev.current(f.t, model) != version || f.h.reportedActive(dev.id, model) != version {
				return false
			}
		}
		return true
	})
}
