package outputs

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/driftline/driftline/agent"
	"github.com/driftline/driftline/agent/pipeline"
	"github.com/driftline/driftline/shared/contract"
)

// Namespace is the agent namespace of the join state.
const Namespace = "outputs"

// Attach wires a Tracker into agent a beside its data pipeline pl: predictions and labels
// posted to /ingest (?kind=) or sent on the data topic in a {"kind", "rows"} envelope reach the
// tracker; its reports go through the agent's outbox; the output reference is the running
// version's.
func Attach(a *agent.Agent, pl *pipeline.Pipeline, reg prometheus.Registerer) (*Tracker, error) {
	return AttachWith(a, pl, reg, nil)
}

// AttachWith is Attach with a callback for drifted prediction windows (agent/samples'
// Sampler.PredictionDrift, so the open input window is sampled).
func AttachWith(a *agent.Agent, pl *pipeline.Pipeline, reg prometheus.Registerer, onPredictionDrift func()) (*Tracker, error) {
	x := &extension{pl: pl, reg: reg, onPredictionDrift: onPredictionDrift}
	if err := a.AddExtension(x); err != nil {
		return nil, err
	}
	return x.t, nil
}

// extension is the tracker as an agent extension.
type extension struct {
	agent.ExtensionBase
	pl                *pipeline.Pipeline
	reg               prometheus.Registerer
	onPredictionDrift func()
	t                 *Tracker
}

func (x *extension) ID() string { return "outputs" }

func (x *extension) Init(h agent.Host) error {
	cfg := h.Config
	t, err := New(Options{OnPredictionDrift: x.onPredictionDrift,
		DeviceID: cfg.DeviceID, Topics: h.Topics, Reporter: h.Agent, Model: RunningModel{h.Agent}, State: h.State.Sub(Namespace),
		Window:     contract.Window{Rows: cfg.Window.Rows, Seconds: float64(cfg.Window.Seconds)},
		Join:       JoinOptions{MaxEntries: cfg.Outputs.MaxPending, MaxAge: cfg.Outputs.MaxAge.D()},
		Registerer: x.reg, Logger: h.Logger,
	})
	if err != nil {
		return err
	}
	x.pl.SetKinds(t)
	x.t = t
	return nil
}

// The tracker's window and join expiry run on the agent's tick goroutine (agent.EventTick).
func (x *extension) Provides(ev agent.Event) bool { return ev == agent.EventTick }
func (x *extension) Tick()                        { x.t.Tick() }
func (x *extension) Flush()                       { x.t.Flush() }

// RunningModel is the tracker's Model over an agent: the first running model by name, with its
// output reference (ok false when it came without one), as the pipeline checks data against
// the first running model.
type RunningModel struct{ Agent *agent.Agent }

// Output implements Model.
func (m RunningModel) Output() (model string, version int, reference []byte, ok bool) {
	ms, err := m.Agent.ActiveModels()
	if err != nil {
		m.Agent.Logger().Warn("read output reference", "err", err)
	}
	if len(ms) == 0 || ms[0].Output == nil {
		return "", 0, nil, false
	}
	return ms[0].Name, ms[0].Version, ms[0].Output, true
}
