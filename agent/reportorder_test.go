package agent_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/driftline/driftline/agent"
	"github.com/driftline/driftline/agent/agenttest"
	"github.com/driftline/driftline/agent/devicedb"
	"github.com/driftline/driftline/agent/modelstore"
	"github.com/driftline/driftline/internal/testhelp"
	"github.com/driftline/driftline/shared/wire"
)

// reportSink is an outbox publisher that keeps what it is handed, in order.
type reportSink struct {
	mu   sync.Mutex
	msgs []wire.Reported
}

func (c *reportSink) Publish(_ context.Context, _ string, payload []byte, _ byte, _ bool) error {
	r, err := wire.DecodeReported(payload)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.msgs = append(c.msgs, r)
	c.mu.Unlock()
	return nil
}

func (c *reportSink) last() (wire.Reported, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.msgs) == 0 {
		return wire.Reported{}, 0
	}
	return c.msgs[len(c.msgs)-1], len(c.msgs)
}

// TestReportOvertaken: a reported state snapshotted before a change but queued after the
// change's own report must not be the last one sent. This is the interleaving that left a
// restarted agent's model "activating" on the hub for good (TestFailpointKills/switched under
// load): the report of the connect took its snapshot, the reconciler set the model active and
// queued that, then the connect's older snapshot was queued after it and retained.
func TestReportOvertaken(t *testing.T) {
	cfg := agenttest.Config(t, "dev-order", "token", []string{"tcp://127.0.0.1:1"}, []string{agenttest.Key(t)})
	db, err := devicedb.Open(cfg.StateDir)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	a, err := agent.New(cfg, db.Root(), agent.Options{Logger: testhelp.Logger(t), Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	rec := agent.ReconcilerOf(a)
	if err := rec.Load(nil); err != nil {
		t.Fatal(err)
	}

	// The first report (a connect's) is held between its snapshot and its queueing.
	var calls atomic.Int32
	held, release := make(chan struct{}), make(chan struct{})
	agent.HoldReports(a, func() {
		if calls.Add(1) == 1 {
			close(held)
			<-release
		}
	})
	connectDone := make(chan struct{})
	go func() { defer close(connectDone); agent.Report(a) }()
	<-held
	// Meanwhile the reconciler changes model m's state, which reports at once.
	err = rec.Load([]modelstore.Recovery{{Name: "m", Action: modelstore.ActionRolledBack, Err: errors.New("interrupted")}})
	if err != nil {
		t.Fatal(err)
	}
	if _, ms := rec.Reported(); ms["m"].State != wire.StateFailed {
		t.Fatalf("records say %+v, want m failed", ms)
	}
	close(release)
	<-connectDone

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pub := &reportSink{}
	sent := make(chan error, 1)
	out := agent.OutboxOf(a)
	go func() { sent <- out.Run(ctx, pub) }()
	testhelp.WaitFor(t, 10*time.Second, "outbox drained", func() bool { return out.Stats().Depth == 0 })
	cancel()
	if err := <-sent; err != nil && !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	last, n := pub.last()
	if n == 0 {
		t.Fatal("no reported state sent")
	}
	if m, ok := last.Models["m"]; !ok || m.State != wire.StateFailed {
		t.Fatalf("the last of %d reported states sent says m is %+v (present %v), want failed: an older snapshot overtook the change", n, m, ok)
	}
}
