package protocol

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/driftline/driftline/hub/broker"
	"github.com/driftline/driftline/hub/state/statetest"
	"github.com/driftline/driftline/internal/testhelp"
	"github.com/driftline/driftline/shared/wire"
)

// TestSharedFanoutDedupe: requests for a chunk join its pending publish (which waits the delay
// after the last of them); after the publish, a
// device that was listening before it is not served again, and one that started listening
// after it gets another shared publish, no sooner than the gap after the first.
func TestSharedFanoutDedupe(t *testing.T) {
	s := &Service{cfg: Config{SharedDelay: 100 * time.Millisecond, SharedWait: time.Second, SharedGap: 3 * time.Second}, m: newMetrics(nil)}
	f := newSharedFanout(s)
	t0 := time.Unix(1_000_000, 0)
	const c = "sha256:00"
	f.want("a", "m", "sa", c, t0)
	f.want("b", "m", "sb", c, t0.Add(50*time.Millisecond)) // joins the pending publish
	if due, next := f.takeDue(t0.Add(50 * time.Millisecond)); len(due) != 0 || !next.Equal(t0.Add(150*time.Millisecond)) {
		t.Fatalf("before the delay: due %v, next %v; want the delay after the last request", due, next)
	}
	pub := t0.Add(150 * time.Millisecond)
	if due, _ := f.takeDue(pub); len(due) != 1 {
		t.Fatalf("at the delay: due %v, want the chunk once", due)
	}
	// a and b listened before the publish: their later requests are on their way.
	f.want("a", "m", "sa", c, t0.Add(time.Second))
	f.want("b", "m", "sb", c, t0.Add(time.Second))
	if due, next := f.takeDue(t0.Add(10 * time.Second)); len(due) != 0 || !next.IsZero() {
		t.Fatalf("listeners before the publish asked again: due %v, next %v", due, next)
	}
	// c started listening after it (as does a with a new subscription): one more publish, at
	// the gap.
	f.want("c", "m", "sc", c, t0.Add(time.Second))
	f.want("a", "m", "sa2", c, t0.Add(1200*time.Millisecond))
	if due, next := f.takeDue(t0.Add(2 * time.Second)); len(due) != 0 || !next.Equal(pub.Add(3*time.Second)) {
		t.Fatalf("late listener: due %v, next %v; want the next publish at the gap", due, next)
	}
	if due, _ := f.takeDue(pub.Add(3 * time.Second)); len(due) != 1 {
		t.Fatalf("late listener: due %v at the gap, want the chunk once", due)
	}
	// Another model's chunk of the same digest is its own publish.
	f.want("d", "m2", "sd", c, t0.Add(5*time.Second))
	if due, _ := f.takeDue(t0.Add(6 * time.Second)); len(due) != 1 || due[0].model != "m2" {
		t.Fatalf("other model: due %v", due)
	}
}

// TestSharedFanoutWaveSpread: a wave whose devices start listening one every 100 ms for 20 s
// (a fleet simulated on one machine, each device joining as its share of the CPU allows) costs
// a handful of publishes of each chunk (2, 4, 8 s into the burst, then every
// wire.MaxSharedHold), not one per SharedGap, and every device still gets one after it started
// listening; a wave that joins within the delay of each other costs one.
func TestSharedFanoutWaveSpread(t *testing.T) {
	s := &Service{cfg: Config{SharedDelay: 250 * time.Millisecond, SharedWait: 2 * time.Second, SharedGap: 3 * time.Second}, m: newMetrics(nil)}
	f := newSharedFanout(s)
	t0 := time.Unix(1_000_000, 0)
	const c = "sha256:00"
	var pubs []time.Time
	var joins []time.Time
	step := 50 * time.Millisecond
	for now := t0; now.Before(t0.Add(40 * time.Second)); now = now.Add(step) {
		if i := len(joins); now.Before(t0.Add(20*time.Second)) && now.Sub(t0) >= time.Duration(i)*100*time.Millisecond {
			f.want(fmt.Sprintf("d%d", i), "m", fmt.Sprintf("s%d", i), c, now)
			joins = append(joins, now)
		}
		if due, _ := f.takeDue(now); len(due) == 1 {
			pubs = append(pubs, now)
		}
	}
	t.Logf("%d devices joining over 20 s: publishes at %v", len(joins), pubs)
	if len(pubs) == 0 || len(pubs) > 5 {
		t.Fatalf("%d publishes for one wave joining over 20 s; want 1 to 5", len(pubs))
	}
	if last := joins[len(joins)-1]; !pubs[len(pubs)-1].After(last) {
		t.Fatalf("last device joined at %v, last publish at %v: it never got the chunk", last.Sub(t0), pubs[len(pubs)-1].Sub(t0))
	}

	// The next wave, after a pause, is not held back by the first one's burst: its first
	// publish comes within the wait of its start.
	t2 := t0.Add(30 * time.Second)
	var next []time.Time
	for now := t2; now.Before(t2.Add(10 * time.Second)); now = now.Add(step) {
		if now.Before(t2.Add(5 * time.Second)) {
			f.want(fmt.Sprintf("w%d", now.UnixMilli()), "m", fmt.Sprintf("w%d", now.UnixMilli()), c, now)
		}
		if due, _ := f.takeDue(now); len(due) == 1 {
			next = append(next, now)
		}
	}
	if len(next) == 0 || len(next) > 2 || next[0].Sub(t2) > 2*time.Second {
		t.Fatalf("the next wave (joining for 5 s, 10 s after the last publish): publishes at %v; want the first within the wait after its start (%v), two at most", next, t2)
	}

	// A wave that joins together: one publish, the delay after the last device.
	const c2 = "sha256:01"
	t1 := t0.Add(time.Hour)
	for i := range 10 {
		f.want(fmt.Sprintf("e%d", i), "m", fmt.Sprintf("e%d", i), c2, t1.Add(time.Duration(i)*20*time.Millisecond))
	}
	if due, next := f.takeDue(t1.Add(200 * time.Millisecond)); len(due) != 0 || !next.Equal(t1.Add(180*time.Millisecond+250*time.Millisecond)) {
		t.Fatalf("wave within the delay: due %v, next %v", due, next)
	}
	if due, _ := f.takeDue(t1.Add(time.Second)); len(due) != 1 {
		t.Fatalf("wave within the delay: due %v, want one publish", due)
	}
	if due, next := f.takeDue(t1.Add(time.Minute)); len(due) != 0 || !next.IsZero() {
		t.Fatalf("after the publish: due %v, next %v", due, next)
	}
}

// TestSharedFanoutLonePull: where the broker does not count subscribers (Mosquitto, EMQX), the
// devices seen joining stand for the listeners. A device pulling alone waits SharedDelay for its
// first request only; a chunk it asks for later goes out at once. With a second device joined,
// a chunk only one of them asked for still waits.
func TestSharedFanoutLonePull(t *testing.T) {
	s := &Service{cfg: Config{SharedDelay: 250 * time.Millisecond, SharedWait: 2 * time.Second, SharedGap: 3 * time.Second}, m: newMetrics(nil)}
	f := newSharedFanout(s)
	t0 := time.Unix(1_000_000, 0)
	f.want("d0", "m", "s0", "sha256:a0", t0)
	if due, next := f.takeDue(t0); len(due) != 0 || !next.Equal(t0.Add(250*time.Millisecond)) {
		t.Fatalf("first request: due %v, next %v; want it held SharedDelay", due, next)
	}
	if due, _ := f.takeDue(t0.Add(300 * time.Millisecond)); len(due) != 1 {
		t.Fatalf("first request after the delay: due %v", due)
	}
	t1 := t0.Add(time.Second)
	f.want("d0", "m", "s0", "sha256:a1", t1)
	if due, _ := f.takeDue(t1); len(due) != 1 {
		t.Fatalf("the lone device's second window: due %v at once; want it published at once", due)
	}

	// A wave of two: d1 joins; a chunk d0 alone asks for waits for d1.
	f.want("d1", "m", "s1", "sha256:a2", t1)
	if due, _ := f.takeDue(t1.Add(300 * time.Millisecond)); len(due) != 1 {
		t.Fatalf("the second device's first request after the delay: due %v", due)
	}
	t2 := t1.Add(time.Second)
	f.want("d0", "m", "s0", "sha256:a3", t2)
	if due, _ := f.takeDue(t2); len(due) != 0 {
		t.Fatalf("a chunk one of two listeners asked for: due %v at once; want it held for the other", due)
	}
	f.want("d1", "m", "s1", "sha256:a3", t2.Add(10*time.Millisecond))
	if due, _ := f.takeDue(t2.Add(10 * time.Millisecond)); len(due) != 1 || due[0].digest != "sha256:a3" {
		t.Fatalf("both listeners asked: due %v; want sha256:a3 at once", due)
	}
}

// TestSharedFanoutHoldsNoLongerThanAgentsWait: a wave whose devices keep joining for 90 s (a
// 90,000-device wave whose desired states and manifests go out at the hub's pace) is published
// again and again; no device waits longer than wire.MaxSharedHold from its request to the next
// publish, well under what an agent waits for a request naming the shared topic
// (wire.SharedDeadline of its request timeout) before it asks per device. The hold used to grow
// with the burst to 32 s, and at 100,000 devices the devices joining late in a long burst
// timed out and fetched the whole model per device (docs/benchmarks.md, run d).
func TestSharedFanoutHoldsNoLongerThanAgentsWait(t *testing.T) {
	s := &Service{cfg: Config{SharedDelay: DefaultSharedDelay, SharedWait: DefaultSharedWait, SharedGap: DefaultSharedGap}, m: newMetrics(nil)}
	f := newSharedFanout(s)
	t0 := time.Unix(1_000_000, 0)
	const c = "sha256:00"
	const step = 50 * time.Millisecond
	var joins, pubs []time.Time
	for now := t0; now.Before(t0.Add(2 * time.Minute)); now = now.Add(step) {
		if now.Before(t0.Add(90*time.Second)) && now.Sub(t0)%(100*time.Millisecond) == 0 {
			i := len(joins)
			f.want(fmt.Sprintf("d%d", i), "m", fmt.Sprintf("s%d", i), c, now)
			joins = append(joins, now)
		}
		if due, _ := f.takeDue(now); len(due) == 1 {
			pubs = append(pubs, now)
		}
	}
	t.Logf("%d devices joining over 90 s: %d publishes", len(joins), len(pubs))
	if limit := wire.SharedDeadline(wire.DefaultFetchTimeout) / 2; wire.MaxSharedHold > limit {
		t.Fatalf("wire.MaxSharedHold %v leaves an agent's shared request less than half its wait (%v)", wire.MaxSharedHold, limit)
	}
	p, longest := 0, time.Duration(0)
	for _, j := range joins {
		for p < len(pubs) && pubs[p].Before(j) { // a publish stamped at the join carries it
			p++
		}
		if p == len(pubs) {
			t.Fatalf("a device joined at %v and no publish came after", j.Sub(t0))
		}
		longest = max(longest, pubs[p].Sub(j))
	}
	if longest > wire.MaxSharedHold+step {
		t.Fatalf("a device waited %v for a shared publish; want at most wire.MaxSharedHold (%v)", longest, wire.MaxSharedHold)
	}
	// Still far fewer publishes than one per device or per gap: 90 s at 8 s apart.
	if len(pubs) > 90/8+5 {
		t.Fatalf("%d publishes for one wave joining over 90 s; want about one per wire.MaxSharedHold", len(pubs))
	}
}

// countingBroker is the embedded broker, counting the subscriber counts asked of it.
type countingBroker struct {
	*broker.Broker
	counts atomic.Int64
}

func (c *countingBroker) Subscribers(topic string) int {
	c.counts.Add(1)
	return c.Broker.Subscribers(topic)
}

// TestSharedFanoutCountsListenersSeldom: the embedded broker counts a topic's subscribers by
// gathering them all (mochi), so the fan-out asks it at most once per listenersAge, not once per
// chunk of every shared request: 9,000 devices asking for 16 chunks each would otherwise make
// 144,000 counts of up to 9,000 subscriptions (a third of the hub's CPU in the 10,000-agent
// bench-fleet run of 2026-12-07).
func TestSharedFanoutCountsListenersSeldom(t *testing.T) {
	st := statetest.New(t)
	b, err := broker.New(broker.Config{Addr: "127.0.0.1:0", DB: st.DB, Auth: noClients{}, Logger: testhelp.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	cb := &countingBroker{Broker: b}
	s := &Service{cfg: Config{Transport: cb, Topics: wire.Default(), SharedDelay: 250 * time.Millisecond, SharedWait: 2 * time.Second, SharedGap: 3 * time.Second}, m: newMetrics(nil)}
	f := newSharedFanout(s)
	start := time.Now()
	const requests = 2000
	for i := range requests {
		f.want(fmt.Sprintf("d%d", i), "m", fmt.Sprintf("s%d", i), fmt.Sprintf("sha256:%02x", i%16), time.Now())
	}
	took := time.Since(start)
	if limit := int64(took/listenersAge) + 2; cb.counts.Load() > limit {
		t.Fatalf("%d requests in %v asked the broker for its subscriber count %d times; want at most %d (once per %v)", requests, took, cb.counts.Load(), limit, listenersAge)
	}
	if n, ok := f.brokerListeners("m"); !ok || n != 0 {
		t.Fatalf("listeners %d, %v; want the broker's count (0)", n, ok)
	}
}

// TestSharedFanoutBurstPublishes: a wave joining without a pause (one device every 20 ms) costs
// at most 1 publish per chunk for 1 s, 2 for 6 s, 3 for 10 s, 4 for 20 s: the hold starts at
// SharedWait and then grows to twice the burst's age (publishes about 2, 6, 14 s into the burst,
// then every wire.MaxSharedHold). With the hold growing as the burst's age (2, 5, 10, 18 s),
// 6 s cost 3 and 20 s 5, and the bound is 3 × the model per wave (at 100,000 devices
// wave 3 joins over the ~15–20 s its desired states take to go out).
func TestSharedFanoutBurstPublishes(t *testing.T) {
	for _, tc := range []struct {
		burst time.Duration
		max   int
	}{{time.Second, 1}, {6 * time.Second, 2}, {10 * time.Second, 3}, {20 * time.Second, 4}} {
		s := &Service{cfg: Config{SharedDelay: DefaultSharedDelay, SharedWait: DefaultSharedWait, SharedGap: DefaultSharedGap}, m: newMetrics(nil)}
		f := newSharedFanout(s)
		t0 := time.Unix(1_000_000, 0)
		var pubs []time.Duration
		var last time.Time
		n := 0
		for now := t0; now.Before(t0.Add(tc.burst + 20*time.Second)); now = now.Add(10 * time.Millisecond) {
			if now.Before(t0.Add(tc.burst)) && now.Sub(t0)%(20*time.Millisecond) == 0 {
				f.want(fmt.Sprintf("d%d", n), "m", fmt.Sprintf("s%d", n), "sha256:00", now)
				n, last = n+1, now
			}
			if due, _ := f.takeDue(now); len(due) == 1 {
				pubs = append(pubs, now.Sub(t0))
			}
		}
		if len(pubs) == 0 || len(pubs) > tc.max || t0.Add(pubs[len(pubs)-1]).Before(last) {
			t.Errorf("a burst of %v (%d devices): publishes at %v; want 1 to %d, the last after the last device joined", tc.burst, n, pubs, tc.max)
		}
	}
}
