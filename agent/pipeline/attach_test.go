package pipeline_test

import (
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/driftline/driftline/shared/contract"
	"github.com/driftline/driftline/shared/drift"
	"github.com/driftline/driftline/shared/profile"

	"github.com/driftline/driftline/agent"
	"github.com/driftline/driftline/agent/config"
	"github.com/driftline/driftline/agent/devicedb"
	"github.com/driftline/driftline/agent/pipeline"
)

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
