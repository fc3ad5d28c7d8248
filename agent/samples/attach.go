package samples

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/driftline/driftline/agent"
	"github.com/driftline/driftline/agent/pipeline"
)

// Namespace is the agent namespace of the sample budget.
const Namespace = "samples"

// Attach gives pipeline pl a Sampler that reports through agent a's outbox, with the agent
// config's reservoir size and daily budget (samples.max_rows, samples.max_bytes_per_day). The
// sampler is an agent extension (agent.AddExtension) for its state; it runs on the pipeline's
// goroutines.
func Attach(a *agent.Agent, pl *pipeline.Pipeline, reg prometheus.Registerer) (*Sampler, error) {
	x := &extension{pl: pl, reg: reg}
	if err := a.AddExtension(x); err != nil {
		return nil, err
	}
	return x.s, nil
}

// extension is the sampler as an agent extension.
type extension struct {
	agent.ExtensionBase
	pl  *pipeline.Pipeline
	reg prometheus.Registerer
	s   *Sampler
}

func (x *extension) ID() string { return "samples" }

func (x *extension) Init(h agent.Host) error {
	cfg := h.Config
	s, err := New(Options{DeviceID: cfg.DeviceID, Topics: h.Topics, Reporter: h.Agent, State: h.State.Sub(Namespace),
		MaxRows: cfg.Samples.MaxRows, MaxBytesPerDay: cfg.Samples.MaxBytesPerDay, Registerer: x.reg, Logger: h.Logger})
	if err != nil {
		return err
	}
	x.pl.SetSampler(s)
	x.s = s
	return nil
}
