package fleet

import (
	"context"
	"time"

	"github.com/driftline/driftline/agent"
	"github.com/driftline/driftline/agent/pipeline"
	"github.com/driftline/driftline/agent/quarantine"
	"github.com/driftline/driftline/shared/contract"
)

// attachPipeline wires the agent's data pipeline to a through the agent's extension points, as
// driftline-agent's run hook does: validation, quarantine in the agent's own namespace,
// windows, and reports through the agent's outbox against its active model's reference. It
// returns the pipeline so the in-process firmware can feed it.
func attachPipeline(a *agent.Agent) (*pipeline.Pipeline, error) {
	q, err := quarantine.Open(a.Namespace("quarantine"), quarantine.Options{})
	if err != nil {
		return nil, err
	}
	cfg := a.Config()
	pl, err := pipeline.New(pipeline.Options{
		DeviceID: cfg.DeviceID, Topics: a.Topics(),
		Window:   contract.Window{Rows: cfg.Window.Rows, Seconds: float64(cfg.Window.Seconds)},
		Reporter: a, Model: a, Quarantine: q, Logger: a.Logger(),
	})
	if err != nil {
		return nil, err
	}
	a.OnData(func(p []byte) { _, _ = pl.IngestPayload("mqtt", p) })
	a.SetStats(func() agent.PipelineStats {
		s := pl.Stats()
		return agent.PipelineStats{RecordsSeen: s.RecordsSeen, RecordsInvalid: s.RecordsInvalid, QuarantineDepth: s.QuarantineDepth}
	})
	a.Go(func(ctx context.Context) { pl.Run(ctx, time.Second) })
	return pl, nil
}
