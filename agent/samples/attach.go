package samples

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/driftline/driftline/shared/wire"

	"github.com/driftline/driftline/agent"
	"github.com/driftline/driftline/agent/pipeline"
)

// Namespace is the agent namespace of the sample budget.
const Namespace = "samples"

// uploadTick is how often the uploader looks for uploads to send again.
const uploadTick = 5 * time.Second

// Attach gives pipeline pl a Sampler that reports through agent a's outbox, with the agent
// config's reservoir size and daily budget (samples.max_rows, samples.max_bytes_per_day). The
// sampler's uploads are acknowledged on the device's sample_ack topic and sent again, until
// acknowledged, from a loop that runs with the agent.
func Attach(a *agent.Agent, pl *pipeline.Pipeline, reg prometheus.Registerer) (*Sampler, error) {
	cfg := a.Config()
	s, err := New(Options{DeviceID: cfg.DeviceID, Topics: a.Topics(), Reporter: a, State: a.Namespace(Namespace),
		MaxRows: cfg.Samples.MaxRows, MaxBytesPerDay: cfg.Samples.MaxBytesPerDay, Registerer: reg, Logger: a.Logger()})
	if err != nil {
		return nil, err
	}
	if err := a.OnMessage(wire.KindSampleAck, s.Uploader().HandleAck); err != nil {
		return nil, err
	}
	a.Go(func(ctx context.Context) { s.Uploader().Run(ctx, uploadTick) })
	pl.SetSampler(s)
	return s, nil
}
