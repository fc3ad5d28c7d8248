package pipeline_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/driftline/driftline/agent"
	"github.com/driftline/driftline/agent/config"
	"github.com/driftline/driftline/agent/devicedb"
	"github.com/driftline/driftline/agent/pipeline"
	"github.com/driftline/driftline/hub/node/nodetest"
	"github.com/driftline/driftline/internal/testhelp"
	"github.com/driftline/driftline/shared/wire"
)

// TestAttachReportsReachTheHub runs a real agent with the pipeline attached the way
// `driftline-agent run` does, feeds it readings on its data topic (good and bad rows), and checks
// that its validation reports reach the hub's device state and its bad rows the quarantine.
func TestAttachReportsReachTheHub(t *testing.T) {
	dir := t.TempDir()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	hub := nodetest.Start(t)
	admin := hub.Token
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

	cfg := config.Default()
	cfg.TrustedKeys = hub.Keys()
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
	testhelp.WaitFor(t, 15*time.Second, "the agent to subscribe", func() bool {
		tk := c.Publish(wire.Default().Data("edge-1"), 1, false, []byte(`[{"temp":20.5},{"temp":21},{"temp":500},{"temp":null}]`))
		tk.WaitTimeout(5 * time.Second)
		return pl.Stats().RecordsSeen >= 4
	})
	testhelp.WaitFor(t, 15*time.Second, "the validation report in the hub's device state", func() bool {
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

// TestContractWindowHonoured runs a real agent, pipeline attached as `driftline-agent run`
// attaches it, with no window in its config, against a real hub: the active model's contract
// asks for windows of 100 rows or 3 seconds, so 40 readings are scored for drift within about
// 3 seconds (not after the 60-second default), a client subscribed to the drift topic sees the
// report, and /metrics says the window came from the contract.
func TestContractWindowHonoured(t *testing.T) {
	dir := t.TempDir()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	hub := nodetest.Start(t)
	var dev struct {
		Token string `json:"token"`
	}
	hub.Call(http.MethodPost, "/api/v1/devices", map[string]string{"id": "edge-w"}, http.StatusCreated, &dev)
	var sample strings.Builder
	sample.WriteString("temp\n")
	for i := 0; i < 200; i++ {
		fmt.Fprintf(&sample, "%d\n", 20+i%10)
	}
	dsv := hub.PushDataset("ds", `{"fields":[{"name":"temp","type":"number"}],"x-driftline":{"window":{"rows":100,"seconds":3}}}`, sample.String())
	mv, _ := hub.PushModel("m", []byte("a tiny model"), fmt.Sprintf(`{"format":"test","trained_on":[{"dataset":"ds","version":%d}]}`, dsv), true)

	cfg := config.Default()
	cfg.TrustedKeys = hub.Keys()
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
	testhelp.WaitFor(t, 15*time.Second, "the agent online", a.Connected)
	hub.Call(http.MethodPut, "/api/v1/devices/edge-w/models/m", map[string]int{"version": mv}, http.StatusOK, nil)
	testhelp.WaitFor(t, 15*time.Second, "the model active", func() bool {
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
	testhelp.WaitFor(t, 15*time.Second, "the rows checked under the model's contract", func() bool {
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
	testhelp.WaitFor(t, 15*time.Second, "the metrics listener", func() bool { return a.MetricsAddr() != "" })
	body := httpGet(t, "http://"+a.MetricsAddr()+"/metrics")
	for _, want := range []string{
		pipeline.MetricWindowRowsLimit + `{source="contract"} 100`,
		pipeline.MetricWindowSecondsLimit + `{source="contract"} 3`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics has no %q", want)
		}
	}
}

// httpGet returns the body of a GET of u (no token).
func httpGet(t *testing.T, u string) string {
	t.Helper()
	res, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return string(b)
}
