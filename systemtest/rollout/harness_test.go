package rollout_test

import (
	"bytes"
	"context"
	"fmt"
	"math"
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
	"github.com/driftline/driftline/hub/node/nodetest"
	"github.com/driftline/driftline/hub/state"
	"github.com/driftline/driftline/internal/testhelp"
	"github.com/driftline/driftline/shared/wire"
)

// pushModel registers a version of model (creating the model when it does not exist), trained
// on dataset@1 when dataset is not empty, and approves it when approve is set.
func pushModel(h *nodetest.Hub, model string, weights, dataset string, approve bool) int {
	h.T.Helper()
	meta := `{"format":"onnx"}`
	if dataset != "" {
		meta = fmt.Sprintf(`{"format":"onnx","trained_on":[{"dataset":%q,"version":1}]}`, dataset)
	}
	// A few KiB: a chunk under 256 bytes is stored without a zstd frame content size, which
	// the hub's chunk server refuses (see DESIGN.md).
	art := bytes.Repeat([]byte(weights), 4096/len(weights)+1)
	v, _ := h.PushModel(model, art, meta, approve)
	return v
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
func startRollout(h *nodetest.Hub, req rolloutReq) string {
	h.T.Helper()
	var out struct {
		ID string `json:"id"`
	}
	h.Call(http.MethodPost, "/api/v1/rollouts", req, http.StatusCreated, &out)
	if out.ID == "" {
		h.T.Fatal("rollout created without an id")
	}
	return out.ID
}

// getRollout reads a rollout through the API.
func getRollout(h *nodetest.Hub, id string) state.Rollout {
	h.T.Helper()
	var r state.Rollout
	h.Call(http.MethodGet, "/api/v1/rollouts/"+id, nil, http.StatusOK, &r)
	return r
}

// waitState waits until rollout id is in state want, failing early if it ends in another.
func waitState(h *nodetest.Hub, id, want string, d time.Duration) state.Rollout {
	h.T.Helper()
	var r state.Rollout
	testhelp.WaitFor(h.T, d, "rollout "+id+" "+want, func() bool {
		r = getRollout(h, id)
		if r.State != want && r.State != state.RolloutRunning && r.State != state.RolloutPaused {
			h.T.Fatalf("rollout %s ended %s (%s), want %s; gates %+v", id, r.State, r.Reason, want, r.GateValues)
		}
		return r.State == want
	})
	return r
}

// rolloutDevices lists a rollout's devices through the API.
func rolloutDevices(h *nodetest.Hub, id string) map[string]state.RolloutDevice {
	h.T.Helper()
	var page state.Page[state.RolloutDevice]
	h.Call(http.MethodGet, "/api/v1/rollouts/"+id+"/devices", nil, http.StatusOK, &page)
	out := map[string]state.RolloutDevice{}
	for _, d := range page.Items {
		out[d.ID] = d
	}
	return out
}

// audit returns the audit entries about rollout id, oldest first.
func audit(h *nodetest.Hub, id string) []state.AuditEntry {
	h.T.Helper()
	var out []state.AuditEntry
	cursor := ""
	for {
		page, err := h.Reader().Audit(state.AuditFilter{}, cursor, state.MaxLimit)
		if err != nil {
			h.T.Fatal(err)
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
func reportedActive(h *nodetest.Hub, id, model string) int {
	h.T.Helper()
	d, err := h.Reader().Device(id)
	if err != nil {
		h.T.Fatal(err)
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
	h    *nodetest.Hub
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

func newFleet(t testing.TB, h *nodetest.Hub) *fleet {
	t.Helper()
	dir := t.TempDir()
	db, err := devicedb.Open(filepath.Join(dir, "db"))
	if err != nil {
		t.Fatal(err)
	}
	f := &fleet{t: t, h: h, db: db, dir: dir, keys: h.Keys(), devs: map[string]*device{}}
	t.Cleanup(f.close)
	return f
}

// enroll adds device id to the hub without starting its agent.
func (f *fleet) enroll(id string, labels map[string]string) *device {
	f.t.Helper()
	d := &device{id: id, token: f.h.Enroll(id, labels), modelDir: filepath.Join(f.dir, "models", id)}
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
	c.DeviceID, c.Token, c.Brokers, c.TrustedKeys = d.id, d.token, []string{f.h.MQTTURL()}, f.keys
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
	a, err := agent.New(c, f.db.Namespace(d.id), agent.Options{Logger: testhelp.Logger(f.t).With("device", d.id),
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
	testhelp.WaitFor(f.t, 20*time.Second, "agents connected", func() bool {
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
		c := paho.NewClient(paho.NewClientOptions().AddBroker(f.h.MQTTURL()).SetClientID(d.id + ":sensor").
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
	testhelp.WaitFor(f.t, d, fmt.Sprintf("%d devices on %s@%d", len(devs), model, version), func() bool {
		for _, dev := range devs {
			if dev.current(f.t, model) != version || reportedActive(f.h, dev.id, model) != version {
				return false
			}
		}
		return true
	})
}
