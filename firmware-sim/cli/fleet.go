package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	httppprof "net/http/pprof"
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
	listen    int64
	dbShards  int
	every     time.Duration
	logLevel  string
	// heapProfile and heapAfter write a heap profile once, for sizing fleets.
	heapProfile string
	heapAfter   time.Duration
	// pprofAddr serves net/http/pprof there (for bench-fleet's profiles; off by default).
	pprofAddr string
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
	fl.Int64Var(&f.listen, "listen-bytes", fleet.DefaultListenBytes, "bytes the agents listening on shared chunk topics may hold at once, each charged twice its model's size (bounds the fleet process's memory)")
	fl.IntVar(&f.dbShards, "db-shards", 0, "badger databases the agents are spread over (0: one per 500 agents; a state dir keeps the number of its first run)")
	fl.DurationVar(&f.every, "summary-every", 5*time.Second, "live summary interval")
	fl.StringVar(&f.logLevel, "log-level", "warn", "agents' log level")
	fl.StringVar(&f.heapProfile, "heap-profile", "", "write a heap profile here after --heap-after (for sizing fleets)")
	fl.DurationVar(&f.heapAfter, "heap-after", time.Minute, "when to write --heap-profile")
	fl.StringVar(&f.pprofAddr, "pprof", "", "serve the process's profiles (net/http/pprof) on this address, e.g. 127.0.0.1:6061 (off by default)")
	return cmd
}

// servePprof serves net/http/pprof on addr (its own mux, not http.DefaultServeMux) until stop.
func servePprof(addr string, log *slog.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%w: --pprof: %v", ErrUsage, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", httppprof.Index)
	mux.HandleFunc("/debug/pprof/profile", httppprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", httppprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", httppprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Warn("fleet: pprof server", "err", err)
		}
	}()
	return func() { _ = srv.Close() }, nil
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
	if f.pprofAddr != "" {
		stop, err := servePprof(f.pprofAddr, log)
		if err != nil {
			return err
		}
		defer stop()
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
		PullConcurrency: f.pulls, ListenBytes: f.listen, DBShards: f.dbShards, SummaryEvery: f.every, Out: stderr, Logger: log,
	})
	return err
}
