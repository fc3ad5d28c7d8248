package outputs

import (
	"context"
	"time"

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
	cfg := a.Config()
	t, err := New(Options{OnPredictionDrift: onPredictionDrift,
		DeviceID: cfg.DeviceID, Topics: a.Topics(), Reporter: a, Model: a, State: a.Namespace(Namespace),
		Window:     contract.Window{Rows: cfg.Window.Rows, Seconds: float64(cfg.Window.Seconds)},
		Join:       JoinOptions{MaxEntries: cfg.Outputs.MaxPending, MaxAge: cfg.Outputs.MaxAge.D()},
		Registerer: reg, Logger: a.Logger(),
	})
	if err != nil {
		return nil, err
	}
	pl.SetKinds(t)
	a.Go(func(ctx context.Context) { t.Run(ctx, time.Second) })
	return t, nil
}
