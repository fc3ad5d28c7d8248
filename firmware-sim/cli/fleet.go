package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"time"

	"github.com/spf13/cobra"

	"github.com/driftline/driftline/agent/config"
	"github.com/driftline/driftline/firmware-sim/fleet"
	"github.com/driftline/driftline/firmware-sim/sim"
)

// fleetFlags are the flags of `firmware-sim fleet`.
type fleetFlags struct {
	devices   int
	hub       string
	token     string
	scenario  string
	stateDir  string
	brokers   []string
	idPattern string
	seed      uint64
	duration  time.Duration
	window    time.Duration
	heartbeat time.Duration
	pulls     int
	every     time.Duration
	logLevel  string
	// heapProfile and heapAfter write a heap profile once, for sizing fleets.
	heapProfile string
	heapAfter   time.Duration
}

func fleetCmd() *cobra.Command {
	var f fleetFlags
	cmd := &cobra.Command{
		Use:   "fleet --devices N --hub URL --token T [--scenario F] [--state-dir DIR]",
		Short: "Run N real agents in one process, fed by a scenario",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runFleet(cmd.Context(), f, cmd.ErrOrStderr())
		},
	}
	fl := cmd.Flags()
	fl.IntVar(&f.devices, "devices", 0, "number of agents (required)")
	fl.StringVar(&f.hub, "hub", os.Getenv("DRIFTLINE_HUB"), "hub API URL (env DRIFTLINE_HUB)")
	fl.StringVar(&f.token, "token", os.Getenv("DRIFTLINE_TOKEN"), "API token that may create devices (env DRIFTLINE_TOKEN)")
	fl.StringVar(&f.scenario, "scenario", "", "scenario feeding every agent in-process (none: agents only)")
	fl.StringVar(&f.stateDir, "state-dir", "driftline-data/fleet", "shared database, model directories and kept device tokens")
	fl.StringSliceVar(&f.brokers, "broker", nil, "broker URL(s) (default: what the hub advertises)")
	fl.StringVar(&f.idPattern, "id-pattern", "fleet-{n:05}", "device id pattern ({n} or {n:W})")
	fl.Uint64Var(&f.seed, "seed", 1, "scenario seed")
	fl.DurationVar(&f.duration, "duration", 0, "stop after this long (0: until Ctrl-C)")
	fl.DurationVar(&f.window, "window", 0, "agents' reporting window in seconds (0: agent default)")
	fl.DurationVar(&f.heartbeat, "heartbeat", 10*time.Second, "agents' heartbeat interval")
	fl.IntVar(&f.pulls, "pull-concurrency", 256, "model pulls the agents run at once (bounds the fleet process's memory)")
	fl.DurationVar(&f.every, "summary-every", 5*time.Second, "live summary interval")
	fl.StringVar(&f.logLevel, "log-level", "warn", "agents' log level")
	fl.StringVar(&f.heapProfile, "heap-profile", "", "write a heap profile here after --heap-after (for sizing fleets)")
	fl.DurationVar(&f.heapAfter, "heap-after", time.Minute, "when to write --heap-profile")
	return cmd
}

func runFleet(ctx context.Context, f fleetFlags, stderr io.Writer) error {
	if f.devices < 1 || f.hub == "" || f.token == "" {
		return fmt.Errorf("%w: fleet needs --devices N, --hub URL and --token T", ErrUsage)
	}
	if f.heapProfile != "" {
		go func() {
			select {
			case <-ctx.Done():
				return
			case <-time.After(f.heapAfter):
			}
			runtime.GC()
			if out, err := os.Create(f.heapProfile); err == nil {
				_ = pprof.WriteHeapProfile(out)
				out.Close()
				fmt.Fprintf(stderr, "heap profile written to %s\n", f.heapProfile)
			}
		}()
	}
	log, err := newLogger(stderr, f.logLevel)
	if err != nil {
		return err
	}
	var s *sim.Scenario
	if f.scenario != "" {
		if s, err = sim.ParseFile(f.scenario); err != nil {
			return err
		}
	}
	dir, err := filepath.Abs(f.stateDir)
	if err != nil {
		return err
	}
	_, err = fleet.Run(ctx, fleet.Config{
		Devices: f.devices, Hub: f.hub, Token: f.token, Brokers: f.brokers, StateDir: dir,
		IDPattern: f.idPattern, Scenario: s, Seed: f.seed, Duration: f.duration,
		Window: config.Window{Seconds: int(f.window.Seconds())}, Heartbeat: f.heartbeat,
		PullConcurrency: f.pulls, SummaryEvery: f.every, Out: stderr, Logger: log,
	})
	return err
}
