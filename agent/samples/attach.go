package samples

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/driftline/driftline/agent"
	"github.com/driftline/driftline/agent/pipeline"
)

// Namespace is the agent namespace of the sample budget.
const Namespace = "samples"

// Attach gives pipeline pl a Sampler that reports through agent a's outbox, with the agent
// config's reservoir size and daily budget (samples.max_rows, samples.max_bytes_per_day).
func Attach(a *agent.Agent, pl *pipeline.Pipeline, reg prometheus.Registerer) (*Sampler, error) {
	cfg := a.Config()
	s, err := New(Options{DeviceID: cfg.DeviceID, Topics: a.Topics(), Reporter: a, State: a.Namespace(Namespace),
		MaxRows: cfg.Samples.MaxRows, MaxBytesPerDay: cfg.Samples.MaxBytesPerDay, Registerer: reg, Logger: a.Logger()})
	if err != nil {
		return nil, err
	}
	pl.SetSampler(s)
	return s, nil
}
