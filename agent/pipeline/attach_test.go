package pipeline_test

import (
	"bytes"
	"context"
	"encoding/json"
	"github.com/driftline/driftline/shared/contract"
	"github.com/driftline/driftline/shared/drift"
	"github.com/driftline/driftline/shared/profile"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/driftline/driftline/agent"
	"github.com/driftline/driftline/agent/config"
	"github.com/driftline/driftline/agent/pipeline"
	"github.com/driftline/driftline/agent/state"
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
	db, err := state.OpenInMemory()
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
	c := paho.NewClient(paho.NewClientOptions().AddBroker(hub.MQTTURL()).SetClientID("edge-1-sensor").
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
