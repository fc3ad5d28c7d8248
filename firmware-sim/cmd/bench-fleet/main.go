// Command bench-fleet measures fleet mode on one hub (`make bench-fleet`): for each -devices N,
// a fresh one-node hub and N real agents in one firmware-sim fleet process; the time until all
// are online, the hub's steady state (CPU, memory per device) with all of them online before the
// rollout, the time to roll a 1 MiB model out to all of them, the hub's CPU time during the
// rollout, the steady state after it and the peak memory of the hub and the fleet. It prints two
// tables: the run's, and the steady states' (the one before the rollout even when the rollout
// does not complete). Needs bin/driftline and bin/firmware-sim (make build) and Linux (/proc).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/driftline/driftline/firmware-sim/demo"
)

type sizes []int

func (s *sizes) String() string { return fmt.Sprint(*s) }

func (s *sizes) Set(v string) error {
	for _, p := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil || n < 1 {
			return fmt.Errorf("bad fleet size %q", p)
		}
		*s = append(*s, n)
	}
	return nil
}

func main() {
	var ns sizes
	cfg := demo.BenchConfig{}
	flag.Var(&ns, "devices", "fleet sizes, e.g. 1000,10000 (repeatable; default 1000)")
	flag.StringVar(&cfg.Bin, "bin", "bin", "directory of driftline and firmware-sim")
	flag.IntVar(&cfg.ModelBytes, "model-bytes", 1<<20, "model size")
	flag.StringVar(&cfg.HTTPAddr, "http", "127.0.0.1:18080", "hub HTTP address")
	flag.StringVar(&cfg.RaftAddr, "raft", "127.0.0.1:17000", "hub Raft address")
	flag.StringVar(&cfg.MQTTAddr, "mqtt", "127.0.0.1:11883", "hub MQTT address")
	flag.StringVar(&cfg.FleetPprofAddr, "fleet-pprof", "127.0.0.1:16061", "where the fleet process serves its profiles with -profile-dir")
	flag.DurationVar(&cfg.Timeout, "timeout", 10*time.Minute, "limit of each phase")
	flag.DurationVar(&cfg.Steady, "steady", time.Minute, "how long each steady state (before and after the rollout) is measured")
	flag.DurationVar(&cfg.Settle, "settle", 30*time.Second, "wait before each steady window, after all agents are online and after the rollout (negative: none)")
	flag.StringVar(&cfg.ProfileDir, "profile-dir", "", "save the hub's CPU profile over each steady window and its heap profile here, and CPU profiles of the hub and the fleet process in 30 s slices while the agents come online and during the rollout")
	flag.Func("hub-env", "NAME=VALUE in the hub's environment only, e.g. GOGC=50 (repeatable)", func(v string) error {
		if !strings.Contains(v, "=") {
			return fmt.Errorf("want NAME=VALUE, got %q", v)
		}
		cfg.HubEnv = append(cfg.HubEnv, v)
		return nil
	})
	flag.Parse()
	if len(ns) == 0 {
		ns = sizes{1000}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var rows, steadyRows []string
	failed := false
	for _, n := range ns {
		cfg.Devices = n
		r, err := demo.BenchFleet(ctx, cfg)
		// The steady state before the rollout is reported even when the rollout fails.
		steadyRows = append(steadyRows, r.SteadyRows()...)
		if err != nil {
			fmt.Fprintf(os.Stderr, "bench-fleet %d: %v\n", n, err)
			failed = true
			continue
		}
		rows = append(rows, r.Row())
	}
	fmt.Println(demo.BenchHeader)
	for _, r := range rows {
		fmt.Println(r)
	}
	fmt.Println()
	fmt.Println(demo.SteadyHeader)
	for _, r := range steadyRows {
		fmt.Println(r)
	}
	if failed {
		os.Exit(1)
	}
}
