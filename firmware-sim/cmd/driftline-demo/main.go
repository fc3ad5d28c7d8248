// Command driftline-demo runs the Driftline demo (`make demo`): a one-node hub, five real
// agents and simulated firmware on this machine, a model rollout stopped by a drift gate. See
// docs/demo.md. Environment: DEMO_SECONDS=N stops it after N seconds with a summary;
// DEMO_SHIFT_SECONDS=N sets when the sensors drift (default 60); DEMO_FLEET=1 runs the agents
// in one firmware-sim fleet process.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/driftline/driftline/firmware-sim/demo"
)

func main() {
	var cfg demo.Config
	flag.StringVar(&cfg.Bin, "bin", "bin", "directory of the driftline, driftline-agent and firmware-sim binaries")
	flag.StringVar(&cfg.DataDir, "data", "driftline-data/demo", "demo directory (emptied at start)")
	flag.StringVar(&cfg.HTTPAddr, "http", "127.0.0.1:8080", "hub HTTP address")
	flag.StringVar(&cfg.RaftAddr, "raft", "127.0.0.1:7000", "hub Raft address")
	flag.StringVar(&cfg.MQTTAddr, "mqtt", "127.0.0.1:1883", "embedded MQTT broker address")
	flag.IntVar(&cfg.Devices, "devices", 5, "devices (agents)")
	flag.Parse()
	var err error
	if cfg.Seconds, err = envInt("DEMO_SECONDS"); err != nil {
		fmt.Fprintln(os.Stderr, "driftline-demo:", err)
		os.Exit(2)
	}
	shift, err := envInt("DEMO_SHIFT_SECONDS")
	if err != nil {
		fmt.Fprintln(os.Stderr, "driftline-demo:", err)
		os.Exit(2)
	}
	cfg.ShiftAfter = time.Duration(shift) * time.Second
	cfg.Fleet = os.Getenv("DEMO_FLEET") == "1"
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	sum, err := demo.Run(ctx, cfg)
	sum.Print(os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "driftline-demo:", err)
		os.Exit(1)
	}
}

func envInt(name string) (int, error) {
	v := os.Getenv(name)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%s=%q: want a number of seconds", name, v)
	}
	return n, nil
}
