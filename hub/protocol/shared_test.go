package protocol

import (
	"testing"
	"time"
)

// TestSharedFanoutDedupe: requests for a chunk join its pending publish; after the publish, a
// device that was listening before it is not served again, and one that started listening
// after it gets another shared publish, no sooner than the gap after the first.
func TestSharedFanoutDedupe(t *testing.T) {
	s := &Service{cfg: Config{SharedDelay: 100 * time.Millisecond, SharedGap: 3 * time.Second}, m: newMetrics(nil)}
	f := newSharedFanout(s)
	t0 := time.Unix(1_000_000, 0)
	const c = "sha256:00"
	f.want("a", "m", "sa", c, t0)
	f.want("b", "m", "sb", c, t0.Add(50*time.Millisecond)) // joins the pending publish
	if due, next := f.takeDue(t0.Add(50 * time.Millisecond)); len(due) != 0 || !next.Equal(t0.Add(100*time.Millisecond)) {
		t.Fatalf("before the delay: due %v, next %v", due, next)
	}
	pub := t0.Add(100 * time.Millisecond)
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
