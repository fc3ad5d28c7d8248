package outbox

import (
	"slices"
	"testing"

	"github.com/driftline/driftline/shared/wire"
)

// TestInspect: Inspect reads the epoch, the numbers held, the unnumbered count and whether the
// outbox waits for the hub, and writes nothing (an Open after it keeps the epoch when numbered
// reports are held).
func TestInspect(t *testing.T) {
	ns := openMem(t)
	if h, err := Inspect(ns); err != nil || h.Epoch != 0 || len(h.Numbers) != 0 || h.AwaitHub {
		t.Fatalf("empty namespace: %+v %v", h, err)
	}
	o, err := Open(ns, numberedOpts())
	if err != nil {
		t.Fatal(err)
	}
	epoch := o.Stats().Epoch
	enqueueV(t, o, 1, 5) // numbers 1 to 4
	if err := o.Enqueue("dl/v1/dev/d/f", []byte(`{"feature":1}`), 1, false); err != nil {
		t.Fatal(err)
	}
	if err := o.HubAck(wire.Ack{Epoch: epoch, Seq: 2}); err != nil {
		t.Fatal(err)
	}
	h, err := Inspect(ns)
	if err != nil {
		t.Fatal(err)
	}
	if h.Epoch != epoch || !slices.Equal(h.Numbers, []uint64{3, 4}) || h.Unnumbered != 1 || !h.AwaitHub {
		t.Fatalf("Inspect = %+v, want epoch %d, numbers [3 4], 1 unnumbered, awaiting the hub", h, epoch)
	}
	again, err := Inspect(ns)
	if err != nil || again.Epoch != h.Epoch || !slices.Equal(again.Numbers, h.Numbers) {
		t.Fatalf("a second Inspect = %+v %v, want %+v", again, err, h)
	}
}
