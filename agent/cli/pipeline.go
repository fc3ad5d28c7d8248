package cli

import (
	"github.com/driftline/driftline/agent"
	"github.com/driftline/driftline/agent/pipeline"
)

// The data pipeline rides on every `driftline-agent run`: readings from the data topic and
// POST /ingest are validated, profiled and reported (see agent/pipeline.Attach).
func init() {
	RegisterRunHook(func(a *agent.Agent) error {
		_, err := pipeline.Attach(a, pipeline.AttachOptions{Registerer: a.Registerer(), Ingest: true, WatchDir: a.Config().WatchDir})
		return err
	})
}
