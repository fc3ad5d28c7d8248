package pipeline

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/driftline/driftline/agent"
	"github.com/driftline/driftline/agent/quarantine"
	"github.com/driftline/driftline/shared/contract"
)

// AttachOptions says which of a's ingestion paths Attach wires.
type AttachOptions struct {
	// Registerer receives the pipeline's metrics (nil: none; fleet mode shares one process).
	Registerer prometheus.Registerer
	// Ingest serves POST /ingest on the agent's metrics address.
	Ingest bool
	// WatchDir, when set, is a directory of .csv/.jsonl files fed to the pipeline once each.
	WatchDir string
}

// Attach wires a data pipeline into agent a through its extension points: readings from the
// device's data topic, optionally POST /ingest and a watched directory; validation against the
// active model's contract (or the configured one while none is active); the quarantine in the
// agent's own namespace; windows; and reports through the agent's durable outbox against the
// reference profile of the active model's training data. driftline-agent's `run` and
// firmware-sim's fleet mode both call it, so a fleet agent is wired exactly like a real one.
func Attach(a *agent.Agent, opts AttachOptions) (*Pipeline, error) {
	cfg := a.Config()
	var schema *contract.Schema
	if cfg.Contract != "" {
		s, err := LoadContract(cfg.Contract)
		if err != nil {
			return nil, fmt.Errorf("pipeline: contract %s: %w", cfg.Contract, err)
		}
		schema = s
	}
	q, err := quarantine.Open(a.Namespace(quarantine.Namespace), quarantine.Options{
		MaxRows: cfg.Quarantine.MaxRows, MaxBytes: cfg.Quarantine.MaxBytes, MaxAge: cfg.Quarantine.MaxAge.D(),
	})
	if err != nil {
		return nil, err
	}
	pl, err := New(Options{
		DeviceID: cfg.DeviceID, Topics: a.Topics(), Contract: schema,
		Window:   contract.Window{Rows: cfg.Window.Rows, Seconds: float64(cfg.Window.Seconds)},
		Reporter: a, Model: a, Quarantine: q, Registerer: opts.Registerer, Logger: a.Logger(),
	})
	if err != nil {
		return nil, err
	}
	a.OnData(func(p []byte) { _, _ = pl.IngestData("mqtt", p) })
	a.SetStats(func() agent.PipelineStats {
		s := pl.Stats()
		return agent.PipelineStats{RecordsSeen: s.RecordsSeen, RecordsInvalid: s.RecordsInvalid, QuarantineDepth: s.QuarantineDepth}
	})
	if opts.Ingest {
		a.Handle("POST /ingest", pl.Handler(0))
	}
	if opts.WatchDir != "" {
		w, err := NewDirWatcher(pl, DirOptions{Dir: opts.WatchDir, State: a.Namespace("watch"), Logger: a.Logger()})
		if err != nil {
			return nil, err
		}
		a.Go(w.Run)
	}
	a.Go(func(ctx context.Context) { pl.Run(ctx, time.Second) })
	return pl, nil
}
