package agent_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/driftline/driftline/agent"
	"github.com/driftline/driftline/agent/cli"
)

// Child mode: the test binary re-executed with DRIFTLINE_AGENT_CHILD=1 is driftline-agent
// itself (cli.Main with its arguments), so crash tests kill a real agent process.
// DRIFTLINE_AGENT_KILL_AFTER_CHUNKS=N makes it SIGKILL itself right after the Nth fetched chunk
// is verified and stored: a kill at a known point of a pull.
func TestMain(m *testing.M) {
	if os.Getenv("DRIFTLINE_AGENT_CHILD") != "1" {
		os.Exit(m.Run())
	}
	if os.Getenv("DRIFTLINE_PPROF") != "" {
		// Profiling for the benchmarks (BenchmarkPull100MB's DRIFTLINE_PROFILE_DIR), served on
		// the metrics listener of the test binary only: the shipped agent does not carry it.
		cli.RegisterRunHook(func(a *agent.Agent) error { return a.AddExtension(pprofExtension{}) })
	}
	n, _ := strconv.ParseInt(os.Getenv("DRIFTLINE_AGENT_KILL_AFTER_CHUNKS"), 10, 64)
	fp := os.Getenv("DRIFTLINE_AGENT_FAILPOINT")
	if n <= 0 && fp == "" {
		os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr))
	}
	die := func() {
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	}
	var seen atomic.Int64
	opts := agent.Options{}
	if n > 0 {
		opts.OnChunk = func() {
			if seen.Add(1) == n {
				die()
			}
		}
	}
	if fp != "" {
		// DRIFTLINE_AGENT_FAILPOINT=STEP kills the agent at a named step of a pull or activation
		// (agent.Options.Failpoint); with DRIFTLINE_AGENT_FAILPOINT_ARMED=FILE, only once FILE
		// exists (the test creates it when the step it wants is near).
		armed := os.Getenv("DRIFTLINE_AGENT_FAILPOINT_ARMED")
		opts.Failpoint = func(s string) {
			if s != fp {
				return
			}
			if armed != "" {
				if _, err := os.Stat(armed); err != nil {
					return
				}
			}
			die()
		}
	}
	if len(os.Args) < 4 || os.Args[1] != "run" || os.Args[2] != "--config" {
		fmt.Fprintln(os.Stderr, "child with a kill point: want run --config FILE")
		os.Exit(2)
	}
	cfg, err := cli.LoadConfig(os.Args[3], "", "", "")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := cli.Run(ctx, cfg, os.Stderr, opts); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// pprofExtension serves the CPU profile and the trace on the agent's local listener.
type pprofExtension struct{ agent.ExtensionBase }

func (pprofExtension) ID() string { return "pprof" }

func (pprofExtension) Init(h agent.Host) error {
	h.Mux.Handle("GET /debug/pprof/profile", http.HandlerFunc(pprof.Profile))
	h.Mux.Handle("GET /debug/pprof/trace", http.HandlerFunc(pprof.Trace))
	return nil
}
