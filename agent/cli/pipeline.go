package cli

import (
	"github.com/driftline/driftline/agent"
	"github.com/driftline/driftline/agent/outputs"
	"github.com/driftline/driftline/agent/pipeline"
	"github.com/driftline/driftline/agent/samples"
)

// The data pipeline rides on every `driftline-agent run`: readings from the data topic and
// POST /ingest are validated, profiled and reported (see agent/pipeline.Attach); predictions and
// labels are tracked against the running version's output reference (agent/outputs.Attach).
func init() {
	RegisterRunHook(func(a *agent.Agent) error {
		pl, err := pipeline.Attach(a, pipeline.AttachOptions{Registerer: a.Registerer(), Ingest: true, WatchDir: a.Config().WatchDir})
		if err != nil {
			return err
		}
		sm, err := samples.Attach(a, pl, a.Registerer())
		if err != nil {
			return err
		}
		_, err = outputs.AttachWith(a, pl, a.Registerer(), sm.PredictionDrift)
		return err
	})
}
