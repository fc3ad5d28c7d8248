// Package cli is the firmware-sim command line: `run` plays a scenario (or a CSV replay) over
// MQTT as simulated device firmware, `fleet` runs many real agents in one process fed by a
// scenario. docs/firmware-sim.md documents both.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

var (
	// ErrUsage is a bad command line (exit status 2).
	ErrUsage = errors.New("usage")
)

// Main runs the command line and returns the exit status: 0 done, 1 failed, 2 bad usage.
func Main(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := NewRoot()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	switch {
	case err == nil:
		return 0
	case errors.Is(err, ErrUsage):
		fmt.Fprintln(stderr, "firmware-sim:", err)
		return 2
	default:
		fmt.Fprintln(stderr, "firmware-sim:", err)
		return 1
	}
}

// NewRoot returns the root command with its subcommands.
func NewRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "firmware-sim",
		Short:         "Simulated sensor firmware and agent fleets for Driftline",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return fmt.Errorf("%w: %v", ErrUsage, err) })
	root.AddCommand(runCmd(), fleetCmd())
	return root
}
