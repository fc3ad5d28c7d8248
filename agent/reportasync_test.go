package agent_test

import (
	"context"
	"errors"
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

// TestChangeNotBlockedBySlowReport: once the agent runs, a change of the reconciler's records
// (a state, download progress) does not wait for its reported state to be queued (an outbox
// commit, which in a fleet process queues behind thousands of agents' commits): the pull goes
// on, and the reported state queued once the slow one is done says what holds then.
func TestChangeNotBlockedBySlowReport(t *testing.T) {
	cfg := agenttest.Config(t, "dev-async", "token", []string{"tcp://127.0.0.1:1"}, []string{agenttest.Key(t)})
	db, err := devicedb.Open(cfg.StateDir)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	a, err := agent.New(cfg, db.Root(), agent.Options{Logger: testhelp.Logger(t), Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	// Every report after the first (Run's own, at start) is held until release.
	var calls atomic.Int32
	held, release := make(chan struct{}), make(chan struct{})
	agent.HoldReports(a, func() {
		if calls.Add(1) == 2 {
			close(held)
			<-release
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	testhelp.WaitFor(t, 10*time.Second, "the start-up report", func() bool { return calls.Load() >= 1 })

	rec := agent.ReconcilerOf(a)
	changed := make(chan error, 2)
	go func() {
		// Two changes: the first one's report is held; the second must not wait for it.
		changed <- rec.Load([]modelstore.Recovery{{Name: "m", Action: modelstore.ActionRolledBack, Err: errors.New("one")}})
		changed <- rec.Load([]modelstore.Recovery{{Name: "n", Action: modelstore.ActionRolledBack, Err: errors.New("two")}})
	}()
	for i := 0; i < 2; i++ {
		select {
		case err := <-changed:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(5 * time.Second):
			close(release)
			t.Fatal("a change of the records waited for its reported state to be queued")
		}
	}
	<-held
	close(release)
	out := agent.OutboxOf(a)
	testhelp.WaitFor(t, 10*time.Second, "a report of both changes queued", func() bool {
		return out.Stats().Depth >= 2 && calls.Load() >= 3
	})
	if _, ms := rec.Reported(); ms["m"].State != wire.StateFailed || ms["n"].State != wire.StateFailed {
		t.Fatalf("records %+v", ms)
	}
}
