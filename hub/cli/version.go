package cli

import (
	"encoding/json"
	"fmt"
	"runtime"

	"github.com/spf13/cobra"
)

func (a *app) versionCmd() *cobra.Command {
	return &cobra.Command{
		Use: "version", Short: "Print the CLI's version", Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			if a.output == "json" {
				b, _ := json.Marshal(map[string]string{"version": Version, "go": runtime.Version()})
				return printRaw(a.stdout, b)
			}
			_, err := fmt.Fprintf(a.stdout, "driftline %s (%s %s/%s)\n", Version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return err
		},
	}
}
