package samples

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/driftline/driftline/agent"
	"github.com/driftline/driftline/agent/pipeline"
	"github.com/driftline/driftline/shared/wire"
)

// Namespace is the agent namespace of the sample budget.
const Namespace = "samples"

// uploadTick is how often the uploader looks for uploads to send again.
const uploadTick = 5 * time.Second

// Attach gives pipeline pl a Sampler that reports through agent a's outbox, with the agent
// config's reservoir size and daily budget (samples.max_rows, samples.max_bytes_per_day). The
// sampler is an agent extension (agent.AddExtension) for its state; it runs on the pipeline's
// goroutines. Its uploads are acknowledged on the device's sample_ack topic and sent again,
// until acknowledged, from the extension's Run.
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
	if err := h.Agent.OnMessage(wire.KindSampleAck, s.Uploader().HandleAck); err != nil {
		return err
	}
	x.pl.SetSampler(s)
	x.s = s
	return nil
}

// Run sends unacknowledged uploads again and applies the hub's acks until ctx ends.
func (x *extension) Run(ctx context.Context) { x.s.Uploader().Run(ctx, uploadTick) }
