package broker

import (
	"bytes"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/driftline/driftline/internal/testhelp"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// The retained messages Broker.Subscribe hands the hub: all of them, whatever the fleet size and
// however slow the handler, and never a stale one after a newer live one on the same topic.

// retainDevices publishes n retained status messages as the hub, one per device, payload v1.
func retainDevices(t *testing.T, b *testBroker, n int) []string {
	t.Helper()
	topics := make([]string, n)
	for i := range topics {
		topics[i] = fmt.Sprintf("dl/v1/dev/edge-%05d/status", i)
		if err := b.Publish(topics[i], []byte("v1"), true, 1); err != nil {
			t.Fatal(err)
		}
	}
	return topics
}

// TestSubscribeDeliversEveryRetainedMessage: a hub (re)start subscribing to every device's
// retained status at 20,000 devices, with a handler that is stuck for a while (a Raft apply
// waiting for a leader): every retained message reaches the handler, none is dropped. Before,
// the replay went into the same non-blocking queues as live messages (4 x 4,096) and dropped
// the rest.
func TestSubscribeDeliversEveryRetainedMessage(t *testing.T) {
	b := startBroker(t, Config{})
	const n = 20000
	topics := retainDevices(t, b, n)
	gate := make(chan struct{})
	var mu sync.Mutex
	got := make(map[string][]byte, n)
	if err := b.Subscribe("dl/v1/dev/+/status", func(topic string, payload []byte) {
		<-gate
		mu.Lock()
		got[topic] = payload
		mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	close(gate)
	testhelp.WaitFor(t, 60*time.Second, "every retained status handled", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) == n
	})
	mu.Lock()
	defer mu.Unlock()
	for _, topic := range topics {
		if p, ok := got[topic]; !ok || string(p) != "v1" {
			t.Fatalf("%s: handled %q (%v), want v1", topic, p, ok)
		}
	}
	if d := testutil.ToFloat64(b.acl.m.dropped.WithLabelValues(reasonHandlerQueue)); d != 0 {
		t.Errorf("dropped{handler_queue} = %v, want 0", d)
	}
}

// seqRecorder records, per topic, what a Subscribe handler saw, and counts a stale v1 handled
// after v2 on the same topic.
type seqRecorder struct {
	mu    sync.Mutex
	last  map[string][]byte
	sawV2 map[string]bool
	stale int
}

func newSeqRecorder() *seqRecorder {
	return &seqRecorder{last: map[string][]byte{}, sawV2: map[string]bool{}}
}

func (r *seqRecorder) handle(topic string, payload []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case bytes.Equal(payload, []byte("v2")):
		r.sawV2[topic] = true
	case r.sawV2[topic]:
		r.stale++
	}
	r.last[topic] = payload
}

func (r *seqRecorder) allV2(n int) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.sawV2) == n
}

// check fails t unless every topic's last handled payload is v2 and no v1 came after a v2.
func (r *seqRecorder) check(t *testing.T, topics []string) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	wrong := 0
	for _, topic := range topics {
		if string(r.last[topic]) != "v2" {
			if wrong == 0 {
				t.Errorf("%s: last handled %q, want v2", topic, r.last[topic])
			}
			wrong++
		}
	}
	if wrong > 0 || r.stale > 0 {
		t.Errorf("%d topics end on the stale retained copy; %d stale copies handled after the newer live one", wrong, r.stale)
	}
}

// TestSubscribeRetainedNotAfterNewerLive: devices publish a new retained status while the hub
// subscribes and its retained replay of the old ones is under way. The handler may see a
// topic's message twice (live and replayed), but never the old retained copy after the new
// live one: the hub's device state is last-writer-wins, so the stale copy would stick (a device
// shown online after it went offline). Before, the replay enqueued the copies it had read, and
// a live message routed between that read and the enqueue was overtaken.
func TestSubscribeRetainedNotAfterNewerLive(t *testing.T) {
	const n = 20000
	b := startBroker(t, Config{HandlerQueue: 2 * n}) // no drops: only the order is under test
	topics := retainDevices(t, b, n)
	rec := newSeqRecorder()
	started := make(chan struct{})
	pubDone := make(chan error, 1)
	go func() {
		for i, topic := range topics {
			if err := b.Publish(topic, []byte("v2"), true, 1); err != nil {
				pubDone <- err
				return
			}
			if i == 0 {
				close(started)
			}
		}
		pubDone <- nil
	}()
	<-started
	if err := b.Subscribe("dl/v1/dev/+/status", rec.handle); err != nil {
		t.Fatal(err)
	}
	if err := <-pubDone; err != nil {
		t.Fatal(err)
	}
	testhelp.WaitFor(t, 60*time.Second, "v2 handled on every topic", func() bool { return rec.allV2(n) })
	_ = b.Close() // lets the workers finish what is queued
	rec.check(t, topics)
}

// TestSubscribeRetainedReplayYieldsToLive: the handler is stuck while Subscribe's replay is
// pending and a device publishes a new retained status; once the handler runs, the last thing
// it sees on that topic is the new status, whichever of the two copies it handles first.
func TestSubscribeRetainedReplayYieldsToLive(t *testing.T) {
	b := startBroker(t, Config{HandlerWorkers: 1})
	topics := retainDevices(t, b, 100)
	gate := make(chan struct{})
	rec := newSeqRecorder()
	if err := b.Subscribe("dl/v1/dev/+/status", func(topic string, payload []byte) {
		<-gate
		rec.handle(topic, payload)
	}); err != nil {
		t.Fatal(err)
	}
	for _, topic := range topics {
		if err := b.Publish(topic, []byte("v2"), true, 1); err != nil {
			t.Fatal(err)
		}
	}
	close(gate)
	testhelp.WaitFor(t, 10*time.Second, "v2 handled on every topic", func() bool { return rec.allV2(len(topics)) })
	_ = b.Close()
	rec.check(t, topics)
}

// TestSubscribeRetainedClearedBeforeReplay: a topic cleared (empty retained publish) while its
// replay entry waits gets no stale copy afterwards: the handler sees the live clearing last.
func TestSubscribeRetainedClearedBeforeReplay(t *testing.T) {
	b := startBroker(t, Config{HandlerWorkers: 1})
	topics := retainDevices(t, b, 10)
	gate := make(chan struct{})
	var mu sync.Mutex
	last := map[string]string{}
	if err := b.Subscribe("dl/v1/dev/+/status", func(topic string, payload []byte) {
		<-gate
		mu.Lock()
		last[topic] = string(payload)
		mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	for _, topic := range topics {
		if err := b.Publish(topic, nil, true, 1); err != nil {
			t.Fatal(err)
		}
	}
	close(gate)
	_ = b.Close() // finishes the live queue; the replay entries before it, or none
	mu.Lock()
	defer mu.Unlock()
	for _, topic := range topics {
		if v, ok := last[topic]; !ok || v != "" {
			t.Errorf("%s: last handled %q (%v), want the clearing", topic, v, ok)
		}
	}
}
