package webhook_test

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/driftline/driftline/hub/command"
	"github.com/driftline/driftline/hub/state"
	"github.com/driftline/driftline/hub/store"
	"github.com/driftline/driftline/hub/store/storetest"
	"github.com/driftline/driftline/hub/webhook"
	"github.com/driftline/driftline/internal/testhelp"
)

// Pending deliveries survive a leader change: the old leader's attempts are in the replicated
// log, the new leader sends what is left, in order, with the same event ids.
func TestLeaderChangeContinuesDeliveries(t *testing.T) {
	c := storetest.MakeCluster(t, 3, func(string) store.Processor { return state.Processor{} })
	stops := map[string]func(){}
	for _, n := range c.Nodes() {
		d := webhook.New(webhook.Config{Store: n.Store, Reader: state.Reader{DB: n.DB}, NodeID: n.ID,
			Backoff: webhook.Backoff{Base: 20 * time.Millisecond, Max: 100 * time.Millisecond, Attempts: 1000}, Poll: 20 * time.Millisecond})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); d.Run(ctx) }()
		stops[n.ID] = func() { cancel(); <-done }
		t.Cleanup(stops[n.ID])
	}
	var healthy atomic.Bool
	rcv := newReceiver(t, func(int) int {
		if healthy.Load() {
			return 0
		}
		return http.StatusServiceUnavailable
	})
	old := c.Leader()
	apply := func(n *storetest.Node, typ command.Type, body any) any {
		env, _ := command.New(typ, "", 0, "tester", body)
		res, err := n.Store.Apply(context.Background(), env)
		if err != nil {
			t.Fatalf("apply %d: %v", typ, err)
		}
		return res
	}
	apply(old, command.TypeWebhookCreate, state.WebhookCreate{ID: "ci", URL: rcv.srv.URL, Secret: secret})
	var ids []string
	for range 3 {
		ids = append(ids, apply(old, command.TypeWebhookTest, state.WebhookTest{ID: "ci"}).(state.WebhookDelivery).Event.ID)
	}
	// The old leader tries and records failures.
	testhelp.WaitFor(t, 15*time.Second, "failed attempts recorded", func() bool {
		p, _ := state.Reader{DB: old.DB}.WebhookLog("ci", "", 5)
		return len(p.Items) >= 2
	})
	stops[old.ID]()
	c.Kill(old)
	nl := c.WaitForNewLeader(old)
	healthy.Store(true)
	testhelp.WaitFor(t, 20*time.Second, "delivered by the new leader", func() bool {
		w, _ := state.Reader{DB: nl.DB}.Webhook("ci")
		return w.Delivered == 3 && w.Pending == 0
	})
	// In order, the same ids, each signed; duplicates (if any) carry the same id.
	var order []string
	for _, d := range rcv.deliveries() {
		verify(t, d)
		if len(order) == 0 || order[len(order)-1] != d.ce.ID {
			order = append(order, d.ce.ID)
		}
	}
	if len(order) != 3 || order[0] != ids[0] || order[1] != ids[1] || order[2] != ids[2] {
		t.Fatalf("received events %v, queued %v", order, ids)
	}
	p, _ := state.Reader{DB: nl.DB}.WebhookLog("ci", "", 100)
	nodes := map[string]bool{}
	for _, e := range p.Items {
		nodes[e.Node] = true
	}
	if !nodes[old.ID] || !nodes[nl.ID] {
		t.Fatalf("delivery log names nodes %v; want attempts by %s and %s", nodes, old.ID, nl.ID)
	}
}
