package pipeline

import (
	"context"
	"fmt"

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

// Attach wires a data pipeline into agent a as an extension (agent.AddExtension): readings
// from the device's data topic, optionally POST /ingest and a watched directory; validation
// against the running model's contract (or the configured one while none runs); the quarantine
// in the extensions' namespace; windows; and reports through the agent's durable outbox against
// the reference profile of the running model's training data. driftline-agent's `run` and
// firmware-sim's fleet mode both call it, so a fleet agent is wired exactly like a real one.
func Attach(a *agent.Agent, opts AttachOptions) (*Pipeline, error) {
	x := &extension{opts: opts}
	if err := a.AddExtension(x); err != nil {
		return nil, err
	}
	return x.pl, nil
}

// extension is the pipeline as an agent extension.
type extension struct {
	agent.ExtensionBase
	opts  AttachOptions
	pl    *Pipeline
	watch *DirWatcher
}

func (x *extension) ID() string { return "pipeline" }

func (x *extension) Provides(ev agent.Event) bool {
	return ev == agent.EventData || ev == agent.EventStats || ev == agent.EventTick
}

// Tick closes a window whose time is up and picks up a change of model, on the agent's tick
// goroutine (agent.EventTick); Flush reports the last partial window when the agent stops.
func (x *extension) Tick()  { x.pl.Tick() }
func (x *extension) Flush() { x.pl.Flush() }

func (x *extension) Init(h agent.Host) error {
	cfg := h.Config
	var schema *contract.Schema
	if cfg.Contract != "" {
		s, err := LoadContract(cfg.Contract)
		if err != nil {
			return fmt.Errorf("pipeline: contract %s: %w", cfg.Contract, err)
		}
		schema = s
	}
	q, err := quarantine.Open(h.State.Sub(quarantine.Namespace), quarantine.Options{
		MaxRows: cfg.Quarantine.MaxRows, MaxBytes: cfg.Quarantine.MaxBytes, MaxAge: cfg.Quarantine.MaxAge.D(),
	})
	if err != nil {
		return err
	}
	x.pl, err = New(Options{
		DeviceID: cfg.DeviceID, Topics: h.Topics, Contract: schema,
		Window:   contract.Window{Rows: cfg.Window.Rows, Seconds: float64(cfg.Window.Seconds)},
		Reporter: h.Agent, Model: RunningModel{h.Agent}, Quarantine: q, Registerer: x.opts.Registerer, Logger: h.Logger,
	})
	if err != nil {
		return err
	}
	if x.opts.Ingest {
		h.Mux.Handle("POST /ingest", x.pl.Handler(0))
	}
	if x.opts.WatchDir != "" {
		x.watch, err = NewDirWatcher(x.pl, DirOptions{Dir: x.opts.WatchDir, State: h.State.Sub("watch"), Logger: h.Logger})
		if err != nil {
			return err
		}
	}
	return nil
}

func (x *extension) OnData(p []byte) { _, _ = x.pl.IngestData("mqtt", p) }

func (x *extension) Stats() agent.PipelineStats {
	s := x.pl.Stats()
	return agent.PipelineStats{RecordsSeen: s.RecordsSeen, RecordsInvalid: s.RecordsInvalid, QuarantineDepth: s.QuarantineDepth}
}

// Run runs the directory watcher, if any, until ctx ends.
func (x *extension) Run(ctx context.Context) {
	if x.watch != nil {
		x.watch.Run(ctx)
	}
}

// RunningModel is the pipeline's ActiveModel over an agent: the first running model by name.
// A device's pipeline checks data against one model; with several running, the first by name.
type RunningModel struct{ Agent *agent.Agent }

// Active implements ActiveModel.
func (m RunningModel) Active() (model string, version int, contract, profile []byte, ok bool) {
	ms, err := m.Agent.ActiveModels()
	if err != nil {
		m.Agent.Logger().Warn("read active model", "err", err)
	}
	if len(ms) == 0 {
		return "", 0, nil, nil, false
	}
	return ms[0].Name, ms[0].Version, ms[0].Contract, ms[0].Profile, true
}
