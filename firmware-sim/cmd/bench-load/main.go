// Command bench-load is the hub-side load test past this machine's agent limit (`make
// bench-load`, issue 18): Mosquitto configured as docs/operations.md says, a one-node hub on it,
// -devices enrolled through the API, firmware-sim/loadgen speaking the device protocol for all of
// them over -conns MQTT connections (heartbeats, numbered validation reports, desired states acted
// on, manifests and chunks fetched and verified), the steady state before and after, and a
// rollout in -waves to every device. It prints the figures docs/benchmarks.md records. Needs
// bin/driftline (make build), mosquitto and Linux (/proc).
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

	"github.com/driftline/driftline/firmware-sim/loadgen"
)

func main() {
	cfg := loadgen.BenchConfig{}
	waves := "1,10,100"
	flag.IntVar(&cfg.Devices, "devices", 100000, "simulated devices")
	flag.IntVar(&cfg.Conns, "conns", 4, "MQTT connections of the load tool (one subscribes, the others publish)")
	flag.StringVar(&cfg.Hub, "hub", "bin/driftline", "the driftline binary")
	flag.StringVar(&cfg.Mosquitto, "mosquitto", "", "the mosquitto binary (default: from PATH)")
	flag.StringVar(&cfg.Dir, "dir", "", "working directory, emptied first (default: a temporary one, removed after)")
	flag.IntVar(&cfg.ModelBytes, "model-bytes", 1<<20, "model size")
	flag.StringVar(&waves, "waves", waves, "cumulative wave percentages")
	flag.DurationVar(&cfg.Bake, "bake", 5*time.Second, "bake time of each wave")
	flag.DurationVar(&cfg.Steady, "steady", time.Minute, "steady-state measurement before and after the rollout")
	flag.DurationVar(&cfg.Timeout, "timeout", 15*time.Minute, "limit of each phase")
	flag.IntVar(&cfg.Rollouts, "rollouts", 1, "split the rollout into this many rollouts of equal shares of the devices, run at once (one rollout may hold every device: its plan and wave starts are written in parts)")
	flag.DurationVar(&cfg.Heartbeat, "heartbeat", 10*time.Second, "the devices' heartbeat interval (the agent's default: 10 s)")
	flag.DurationVar(&cfg.Window, "window", time.Minute, "the interval of each running device's validation report (the agent's default window: 60 s)")
	flag.IntVar(&cfg.EnrollWorkers, "enroll-workers", 32, "concurrent enrolment requests")
	flag.Parse()
	for _, p := range strings.Split(waves, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil || v <= 0 || v > 100 {
			fmt.Fprintf(os.Stderr, "bench-load: bad wave %q\n", p)
			os.Exit(2)
		}
		cfg.Waves = append(cfg.Waves, v)
	}
	if cfg.Dir == "" {
		d, err := os.MkdirTemp("", "bench-load-")
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench-load:", err)
			os.Exit(1)
		}
		defer os.RemoveAll(d)
		cfg.Dir = d
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := loadgen.Bench(ctx, cfg)
	fmt.Print(res.Report())
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench-load: %v (logs in %s)\n", err, cfg.Dir)
		stop()
		os.Exit(1) // the working directory stays: its logs say why
	}
}
