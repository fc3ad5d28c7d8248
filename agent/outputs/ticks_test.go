package outputs_test

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/driftline/driftline/agent"
	"github.com/driftline/driftline/agent/agenttest"
	"github.com/driftline/driftline/agent/outputs"
	"github.com/driftline/driftline/agent/pipeline"
	"github.com/driftline/driftline/internal/testhelp"
)

// TestOneTickGoroutinePerAgent: the periodic work of an agent's extensions (the pipeline's
// window and model checks, the outputs tracker's) runs on one goroutine of the agent with one
// ticker, not on a goroutine and ticker each: a fleet process of 10,000 agents held 20,000
// such goroutines and woke 20,000 times a second. The pipeline's window still closes by time.
func TestOneTickGoroutinePerAgent(t *testing.T) {
	cfg := agenttest.Config(t, "tick-1", "tok", []string{"tcp://127.0.0.1:1"}, []string{agenttest.Key(t)})
	cfg.Window.Seconds = 1
	cfg.Contract = filepath.Join(t.TempDir(), "contract.json")
	if err := os.WriteFile(cfg.Contract, []byte(`{"fields":[{"name":"temp","type":"number"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	var pl *pipeline.Pipeline
	agenttest.StartHook(t, cfg, agent.Options{}, func(a *agent.Agent) {
		var err error
		if pl, err = pipeline.Attach(a, pipeline.AttachOptions{Registerer: reg}); err != nil {
			t.Fatal(err)
		}
		if _, err := outputs.Attach(a, pl, nil); err != nil {
			t.Fatal(err)
		}
	})
	stacks := func() []string {
		buf := make([]byte, 1<<20)
		return strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n")
	}
	tickers := func() (n int) {
		for _, g := range stacks() {
			if strings.Contains(g, "pipeline.RunTicks") || strings.Contains(g, "agent.(*Agent).loop(") {
				n++
			}
		}
		return n
	}
	testhelp.WaitFor(t, 5*time.Second, "the agent's tick goroutine", func() bool { return tickers() > 0 })
	if n := tickers(); n != 1 {
		t.Fatalf("%d goroutines run the extensions' ticks; want 1", n)
	}
	// The agent's own goroutines while it cannot connect: Run, the outbox sender, the connect
	// loop, the connected loop, the reconciler and the housekeeping loop (heartbeats, acks,
	// data, ticks), which were four goroutines and two more for the pipeline's and the tracker's
	// ticks. (Connected, the MQTT client adds its own.)
	var own []string
	for _, g := range stacks() {
		if strings.Contains(g, "github.com/driftline/driftline/agent") && !strings.Contains(g, "TestOneTickGoroutinePerAgent") {
			for _, l := range strings.Split(g, "\n") {
				if strings.HasPrefix(l, "github.com/driftline/driftline/agent") {
					own = append(own, strings.TrimPrefix(l[:strings.LastIndex(l, "(")], "github.com/driftline/driftline/"))
					break
				}
			}
		}
	}
	if len(own) > 6 {
		t.Fatalf("the agent runs %d goroutines while idle, want at most 6: %v", len(own), own)
	}
	// The window (1 s) closes by time on that goroutine, with no row after the first.
	if _, err := pl.IngestPayload("mqtt", []byte(`{"temp":1}`)); err != nil {
		t.Fatal(err)
	}
	testhelp.WaitFor(t, 10*time.Second, "the window closed by time", func() bool {
		return agenttest.Metric(t, reg, pipeline.MetricWindows) >= 1
	})
}
