package outbox

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/driftline/driftline/agent/devicedb"
	"github.com/driftline/driftline/internal/testhelp"
	"github.com/driftline/driftline/shared/wire"
)

// numberedOpts numbers the reports on topics ending in /v (JSON objects), not the others.
func numberedOpts() Options {
	o := fastOpts()
	o.Numbered = func(topic string) bool { return strings.HasSuffix(topic, "/v") }
	o.ResendAfter = time.Hour // the tests rewind explicitly unless they test the timer
	o.GapWait = time.Millisecond
	return o
}

// stamped decodes the numbers a published report carries (zero when none).
func stamped(t *testing.T, m msg) (n int, s wire.ReportSeq) {
	t.Helper()
	var v struct {
		wire.ReportSeq
		N int `json:"n"`
	}
	if err := json.Unmarshal([]byte(m.payload), &v); err != nil {
		return 0, wire.ReportSeq{}
	}
	return v.N, v.ReportSeq
}

func enqueueV(t *testing.T, o *Outbox, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		if err := o.Enqueue("dl/v1/dev/d/v", []byte(fmt.Sprintf(`{"n":%d}`, i)), 1, false); err != nil {
			t.Fatal(err)
		}
	}
}

// TestNumberedReportsWaitForTheHub: numbered reports carry seq/epoch/first; before the hub's
// first ack they go as before (deleted on the broker's ack); after it they stay until the hub
// acknowledges them, and a rewind sends exactly the unacknowledged ones again, in order, with
// unnumbered reports untouched.
func TestNumberedReportsWaitForTheHub(t *testing.T) {
	ns := openMem(t)
	o, err := Open(ns, numberedOpts())
	if err != nil {
		t.Fatal(err)
	}
	epoch := o.Stats().Epoch
	b := newBroker(nil)
	runOutbox(t, o, b)
	enqueueV(t, o, 1, 3)
	if err := o.Enqueue("dl/v1/dev/d/f", []byte(`{"feature":1}`), 1, false); err != nil {
		t.Fatal(err)
	}
	testhelp.WaitFor(t, 10*time.Second, "three sent", func() bool { return len(b.received()) == 3 })
	if d := o.Stats().Depth; d != 0 {
		t.Fatalf("before the hub acknowledges anything, depth %d after the broker's acks", d)
	}
	got := b.received()
	for i, want := range []wire.ReportSeq{{Seq: 1, Epoch: epoch, First: 1}, {Seq: 2, Epoch: epoch, First: 2}, {}} {
		if _, s := stamped(t, got[i]); s != want {
			t.Fatalf("report %d stamped %+v, want %+v (%s)", i, s, want, got[i].payload)
		}
	}

	if err := o.HubAck(wire.Ack{Epoch: epoch, Seq: 2}); err != nil {
		t.Fatal(err)
	}
	enqueueV(t, o, 3, 8) // numbers 3..7
	if err := o.Enqueue("dl/v1/dev/d/f", []byte(`{"feature":2}`), 1, false); err != nil {
		t.Fatal(err)
	}
	testhelp.WaitFor(t, 10*time.Second, "the rest sent", func() bool { return len(b.received()) == 9 })
	if st := o.Stats(); st.Depth != 5 || !st.AwaitHub {
		t.Fatalf("after the broker's acks: %+v, want the 5 numbered reports kept", st)
	}
	// A stale epoch's ack changes nothing; the hub's ack through 4 deletes 3 and 4.
	if err := o.HubAck(wire.Ack{Epoch: epoch - 1, Seq: 100}); err != nil {
		t.Fatal(err)
	}
	if err := o.HubAck(wire.Ack{Epoch: epoch, Seq: 4}); err != nil {
		t.Fatal(err)
	}
	if d := o.Stats().Depth; d != 3 {
		t.Fatalf("depth %d after the hub acknowledged through 4, want 3", d)
	}
	o.Rewind()
	testhelp.WaitFor(t, 10*time.Second, "resend", func() bool { return len(b.received()) == 12 })
	var ns2 []int
	for _, m := range b.received()[9:] {
		n, s := stamped(t, m)
		if s.First != 5 {
			t.Fatalf("resent %s with first %d, want 5", m.payload, s.First)
		}
		ns2 = append(ns2, n)
	}
	if fmt.Sprint(ns2) != "[5 6 7]" {
		t.Fatalf("resent %v, want [5 6 7]", ns2)
	}
	// A gap: the hub has 7 but not 5 and 6.
	if err := o.HubAck(wire.Ack{Epoch: epoch, Seq: 4, Gap: true}); err != nil {
		t.Fatal(err)
	}
	testhelp.WaitFor(t, 10*time.Second, "resend for the gap", func() bool { return len(b.received()) == 15 })
	if err := o.HubAck(wire.Ack{Epoch: epoch, Seq: 7}); err != nil {
		t.Fatal(err)
	}
	if st := o.Stats(); st.Depth != 0 || st.Resends != 2 {
		t.Fatalf("after the hub has everything: %+v", st)
	}
}

// TestNumberingSurvivesRestart: a restart with numbered reports waiting keeps the epoch and goes
// on numbering; one with none waiting starts a later epoch from 1. Waiting reports are sent again
// after the restart, and the wait for the hub stays on.
func TestNumberingSurvivesRestart(t *testing.T) {
	db, err := devicedb.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	ns := db.Root().Sub("outbox")
	o, err := Open(ns, numberedOpts())
	if err != nil {
		t.Fatal(err)
	}
	e1 := o.Stats().Epoch
	if err := o.HubAck(wire.Ack{Epoch: e1}); err != nil {
		t.Fatal(err)
	}
	enqueueV(t, o, 1, 4)
	b := newBroker(nil)
	stop := runOutbox(t, o, b)
	testhelp.WaitFor(t, 10*time.Second, "sent", func() bool { return len(b.received()) == 3 })
	stop()

	o, err = Open(ns, numberedOpts())
	if err != nil {
		t.Fatal(err)
	}
	if st := o.Stats(); st.Epoch != e1 || st.NextNumber != 4 || st.Depth != 3 || !st.AwaitHub {
		t.Fatalf("after a restart with 3 waiting: %+v (epoch was %d)", st, e1)
	}
	b2 := newBroker(nil)
	stop = runOutbox(t, o, b2)
	testhelp.WaitFor(t, 10*time.Second, "resent after restart", func() bool { return len(b2.received()) == 3 })
	if err := o.HubAck(wire.Ack{Epoch: e1, Seq: 3}); err != nil {
		t.Fatal(err)
	}
	stop()

	o, err = Open(ns, numberedOpts())
	if err != nil {
		t.Fatal(err)
	}
	if st := o.Stats(); st.Epoch <= e1 || st.NextNumber != 1 || st.Depth != 0 {
		t.Fatalf("after a restart with none waiting: %+v (epoch was %d)", st, e1)
	}
}

// TestResendAfterSilence: numbered reports the hub never acknowledges are sent again after
// ResendAfter.
func TestResendAfterSilence(t *testing.T) {
	opts := numberedOpts()
	opts.ResendAfter = 50 * time.Millisecond
	o, err := Open(openMem(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := o.HubAck(wire.Ack{Epoch: o.Stats().Epoch}); err != nil {
		t.Fatal(err)
	}
	b := newBroker(nil)
	runOutbox(t, o, b)
	enqueueV(t, o, 1, 3)
	testhelp.WaitFor(t, 10*time.Second, "sent twice", func() bool { return len(b.received()) >= 4 })
	got := b.received()
	if a, _ := stamped(t, got[2]); a != 1 {
		t.Fatalf("resend starts with %s, want report 1", got[2].payload)
	}
}
