package pipeline

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/driftline/driftline/agent/devicedb"
	"github.com/driftline/driftline/agent/outbox"
	"github.com/driftline/driftline/internal/testhelp"
	"github.com/driftline/driftline/shared/contract"
	"github.com/driftline/driftline/shared/profile"
	"github.com/driftline/driftline/shared/wire"
)

// outboxReporter is the Reporter the agent runtime builds: every report goes through the
// store-and-forward outbox with its kind's QoS and retain flag.
type outboxReporter struct{ ob *outbox.Outbox }

func (r outboxReporter) Report(kind wire.Kind, topic string, payload []byte) error {
	return r.ob.Enqueue(topic, payload, kind.QoS(), kind.Retained())
}

// published collects what the outbox sends, as the broker would receive it.
type published struct {
	mu     sync.Mutex
	topics []string
	bodies [][]byte
}

func (p *published) Publish(_ context.Context, topic string, payload []byte, _ byte, _ bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.topics = append(p.topics, topic)
	p.bodies = append(p.bodies, payload)
	return nil
}

func (p *published) len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.topics)
}

func TestReportsThroughOutbox(t *testing.T) {
	db, err := devicedb.OpenInMemory()
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ob, err := outbox.Open(db.Root().Sub("outbox"), outbox.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s := mustSchema(t, testContract)
	h := newHarness(t, Options{Contract: s, Window: contract.Window{Rows: 10, Seconds: 60}})
	h.p.opts.Reporter = outboxReporter{ob}
	if _, err := h.p.IngestPayload("mqtt", payload(0, 10, constant(20))); err != nil {
		t.Fatal(err)
	}
	pub := &published{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ob.Run(ctx, pub) }()
	testhelp.WaitFor(t, 5*time.Second, "condition", func() bool { return pub.len() >= 2 })
	cancel()
	<-done
	if pub.len() != 2 || pub.topics[0] != "dl/v1/dev/dev-1/validation" || pub.topics[1] != "dl/v1/dev/dev-1/profile" {
		t.Fatalf("published %v", pub.topics)
	}
	v, err := wire.DecodeValidation(pub.bodies[0])
	if err != nil || v.Rows != 10 || v.DeviceID != "dev-1" {
		t.Fatalf("validation %+v %v", v, err)
	}
	p, err := profile.Decode(pub.bodies[1])
	if err != nil || p.Rows() != 10 {
		t.Fatalf("profile: %v", err)
	}
}
