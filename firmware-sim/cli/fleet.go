package cli

import (
	"errors"

	"github.com/spf13/cobra"
)

func fleetCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "fleet --devices N --hub URL --token T [--scenario F] [--state-dir DIR]",
		Short: "Run N real agents in one process, fed by a scenario",
		RunE: func(*cobra.Command, []string) error {
			return errors.New("fleet mode needs agent.Agent wired with the data pipeline")
		},
	}
}
