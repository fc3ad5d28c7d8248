package outbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/driftline/driftline/agent/devicedb"
	"github.com/driftline/driftline/internal/testhelp"
)

// msg is one publish a fakeBroker accepted.
type msg struct {
	topic, payload string
	qos            byte
	retain         bool
}

// fakeBroker is a Publisher that acknowledges or fails publishes as the test decides. fail
// returns the error for the nth attempt (counting from 0), or nil to acknowledge it.
type fakeBroker struct {
	mu       sync.Mutex
	attempts int
	got      []msg
	fail     func(attempt int, m msg) error
	notify   chan struct{}
}

func newBroker(fail func(int, msg) error) *fakeBroker {
	return &fakeBroker{fail: fail, notify: make(chan struct{}, 1)}
}

func (b *fakeBroker) Publish(ctx context.Context, topic string, payload []byte, qos byte, retain bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m := msg{topic, string(payload), qos, retain}
	b.mu.Lock()
	defer b.mu.Unlock()
	n := b.attempts
	b.attempts++
	defer func() {
		select {
		case b.notify <- struct{}{}:
		default:
		}
	}()
	if b.fail != nil {
		if err := b.fail(n, m); err != nil {
			return err
		}
	}
	b.got = append(b.got, m)
	return nil
}

func (b *fakeBroker) received() []msg {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]msg(nil), b.got...)
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func fastOpts() Options {
	return Options{RetryMin: time.Millisecond, RetryMax: 5 * time.Millisecond, Logger: quiet()}
}

// runOutbox starts Run in the background and returns a stop function that waits for it.
func runOutbox(t *testing.T, o *Outbox, p Publisher) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- o.Run(ctx, p) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; !errors.Is(err, context.Canceled) {
				t.Errorf("Run returned %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func enqueueN(t *testing.T, o *Outbox, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		if err := o.Enqueue(fmt.Sprintf("dl/v1/dev/d/t%d", i%3), []byte(fmt.Sprintf("report-%04d", i)), 1, i%2 == 0); err != nil {
			t.Fatal(err)
		}
	}
}

func checkInOrder(t *testing.T, got []msg, from, to int) {
	t.Helper()
	if len(got) != to-from {
		t.Fatalf("received %d reports, want %d", len(got), to-from)
	}
	for i, m := range got {
		n := from + i
		want := msg{fmt.Sprintf("dl/v1/dev/d/t%d", n%3), fmt.Sprintf("report-%04d", n), 1, n%2 == 0}
		if m != want {
			t.Fatalf("report %d = %+v, want %+v", i, m, want)
		}
	}
}

func openMem(t *testing.T) devicedb.Namespace {
	t.Helper()
	db, err := devicedb.OpenInMemory()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db.Namespace("dev").Sub("outbox")
}

func TestOutageThenRecoveryKeepsOrder(t *testing.T) {
	tests := []struct {
		name   string
		outage int // attempts that fail before the broker comes back
	}{
		{"no outage", 0},
		{"one failure", 1},
		{"long outage", 25},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o, err := Open(openMem(t), fastOpts())
			if err != nil {
				t.Fatal(err)
			}
			b := newBroker(func(n int, _ msg) error {
				if n < tc.outage {
					return errors.New("broker unreachable")
				}
				return nil
			})
			enqueueN(t, o, 0, 10)
			runOutbox(t, o, b)
			enqueueN(t, o, 10, 40)
			testhelp.WaitFor(t, 10*time.Second, "all reports", func() bool { return len(b.received()) == 40 })
			checkInOrder(t, b.received(), 0, 40)
			testhelp.WaitFor(t, 10*time.Second, "empty queue", func() bool { return o.Stats().Depth == 0 })
			if s := o.Stats(); s.Bytes != 0 || s.Sent != 40 {
				t.Fatalf("stats after drain: %+v", s)
			}
		})
	}
}

func TestRestartBetweenEnqueueAndAck(t *testing.T) {
	dir := t.TempDir()
	db, err := devicedb.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	o, err := Open(db.Root().Sub("outbox"), fastOpts())
	if err != nil {
		t.Fatal(err)
	}
	enqueueN(t, o, 0, 20)
	// The broker acknowledges 5 reports, then the link dies; the process stops mid-outage.
	b := newBroker(func(n int, _ msg) error {
		if n >= 5 {
			return errors.New("connection lost")
		}
		return nil
	})
	stop := runOutbox(t, o, b)
	testhelp.WaitFor(t, 10*time.Second, "outage", func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return b.attempts > 8
	})
	stop()
	checkInOrder(t, b.received(), 0, 5)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db, err = devicedb.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() }) // after runOutbox's cleanup stops Run (LIFO)
	o, err = Open(db.Root().Sub("outbox"), fastOpts())
	if err != nil {
		t.Fatal(err)
	}
	if d := o.Stats().Depth; d != 15 {
		t.Fatalf("depth after restart = %d, want 15", d)
	}
	enqueueN(t, o, 20, 25) // new reports queue behind the old ones
	b2 := newBroker(nil)
	runOutbox(t, o, b2)
	testhelp.WaitFor(t, 10*time.Second, "redelivery", func() bool { return len(b2.received()) == 20 })
	checkInOrder(t, b2.received(), 5, 25)
}

func TestBoundsDropOldestAndCount(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	var clockMu sync.Mutex
	clock := func() time.Time { clockMu.Lock(); defer clockMu.Unlock(); return now }
	advance := func(d time.Duration) { clockMu.Lock(); now = now.Add(d); clockMu.Unlock() }

	// Measure one record's stored size to set a bound that holds exactly 10 of them.
	probe, err := Open(openMem(t), Options{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	enqueueN(t, probe, 0, 1)
	one := probe.Stats().Bytes

	reg := prometheus.NewPedanticRegistry()
	opts := Options{MaxBytes: 10*one + one/2, MaxAge: time.Hour, Logger: quiet(), Registerer: reg, Now: clock,
		RetryMin: time.Millisecond, RetryMax: time.Millisecond}
	o, err := Open(openMem(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	enqueueN(t, o, 0, 25)
	s := o.Stats()
	if s.Depth != 10 || s.Dropped[ReasonSize] != 15 {
		t.Fatalf("after size overflow: %+v", s)
	}
	advance(30 * time.Minute)
	enqueueN(t, o, 25, 30)
	// 25..29 pushed out 15..19 by size; 20..24 are now 75 min old, 25..29 45 min old.
	advance(45 * time.Minute)
	enqueueN(t, o, 30, 31)
	s = o.Stats()
	if s.Dropped[ReasonAge] != 5 || s.Dropped[ReasonSize] != 20 || s.Depth != 6 {
		t.Fatalf("after ageing: %+v", s)
	}
	if got := testutil.ToFloat64(o.metrics.dropped.WithLabelValues(ReasonSize)); got != 20 {
		t.Fatalf("%s{reason=size} = %v", MetricDropped, got)
	}
	if got := testutil.ToFloat64(o.metrics.depth); got != 6 {
		t.Fatalf("%s = %v", MetricDepth, got)
	}
	if n, err := testutil.GatherAndCount(reg, MetricDropped, MetricDepth); err != nil || n != 4 {
		t.Fatalf("gathered %d series, err %v", n, err)
	}
	b := newBroker(nil)
	runOutbox(t, o, b)
	testhelp.WaitFor(t, 10*time.Second, "survivors", func() bool { return len(b.received()) == 6 })
	checkInOrder(t, b.received(), 25, 31)

	if err := o.Enqueue("t", make([]byte, MaxPayload+1), 1, false); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized payload: %v", err)
	}
}

func TestAgeDropAtSend(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	var mu sync.Mutex
	o, err := Open(openMem(t), Options{MaxAge: time.Minute, Logger: quiet(), Now: func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return now
	}})
	if err != nil {
		t.Fatal(err)
	}
	enqueueN(t, o, 0, 3)
	mu.Lock()
	now = now.Add(2 * time.Minute)
	mu.Unlock()
	enqueueN(t, o, 3, 4) // this enqueue already drops 0..2; the sender must not send stale ones
	b := newBroker(nil)
	runOutbox(t, o, b)
	testhelp.WaitFor(t, 10*time.Second, "fresh report", func() bool { return len(b.received()) == 1 })
	checkInOrder(t, b.received(), 3, 4)
	if d := o.Stats().Dropped[ReasonAge]; d != 3 {
		t.Fatalf("age drops = %d, want 3", d)
	}
}

func TestCorruptRecordSkipped(t *testing.T) {
	ns := openMem(t)
	o, err := Open(ns, fastOpts())
	if err != nil {
		t.Fatal(err)
	}
	enqueueN(t, o, 0, 6)
	// Damage two records: one zstd frame, one header.
	for seq, damage := range map[uint64]func([]byte) []byte{
		2: func(v []byte) []byte { v[len(v)-3] ^= 0xff; v[len(v)-6] ^= 0xff; return v },
		4: func(v []byte) []byte { return v[:5] },
	} {
		v, err := ns.Get(seqKey(seq))
		if err != nil {
			t.Fatal(err)
		}
		if err := ns.Set(seqKey(seq), damage(v)); err != nil {
			t.Fatal(err)
		}
	}
	o, err = Open(ns, fastOpts()) // reload sizes after tampering
	if err != nil {
		t.Fatal(err)
	}
	b := newBroker(nil)
	runOutbox(t, o, b)
	testhelp.WaitFor(t, 10*time.Second, "intact reports", func() bool { return len(b.received()) == 4 })
	testhelp.WaitFor(t, 10*time.Second, "empty queue", func() bool { return o.Stats().Depth == 0 })
	var got []string
	for _, m := range b.received() {
		got = append(got, m.payload)
	}
	if fmt.Sprint(got) != "[report-0000 report-0002 report-0004 report-0005]" {
		t.Fatalf("received %v", got)
	}
	if s := o.Stats(); s.Dropped[ReasonCorrupt] != 2 || s.Bytes != 0 {
		t.Fatalf("stats: %+v", s)
	}
}

func TestEnqueueRejectsBadReports(t *testing.T) {
	o, err := Open(openMem(t), fastOpts())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		topic string
		qos   byte
		want  error
	}{
		{"empty topic", "", 1, ErrBadReport},
		{"qos 3", "a", 3, ErrBadReport},
		{"huge topic", string(make([]byte, 70000)), 1, ErrBadReport},
		{"ok qos 0", "a", 0, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := o.Enqueue(tc.topic, []byte("x"), tc.qos, false); !errors.Is(err, tc.want) {
				t.Fatalf("Enqueue = %v, want %v", err, tc.want)
			}
		})
	}
	if _, err := Open(openMem(t), Options{Registerer: prometheus.NewRegistry()}); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	if _, err := Open(openMem(t), Options{Registerer: reg}); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(openMem(t), Options{Registerer: reg}); err == nil {
		t.Fatal("second outbox on one registry: want an error")
	}
}

func TestRunTwiceRefused(t *testing.T) {
	o, err := Open(openMem(t), fastOpts())
	if err != nil {
		t.Fatal(err)
	}
	runOutbox(t, o, newBroker(nil))
	testhelp.WaitFor(t, 10*time.Second, "first Run", func() bool { return o.running.Load() })
	if err := o.Run(context.Background(), newBroker(nil)); !errors.Is(err, ErrRunning) {
		t.Fatalf("second Run = %v", err)
	}
}

func TestConcurrentEnqueueWhileSending(t *testing.T) {
	o, err := Open(openMem(t), fastOpts())
	if err != nil {
		t.Fatal(err)
	}
	flaky := newBroker(func(n int, _ msg) error {
		if n%7 == 3 {
			return errors.New("transient")
		}
		return nil
	})
	runOutbox(t, o, flaky)
	const writers, each = 4, 50
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if err := o.Enqueue(fmt.Sprintf("w%d", w), []byte(fmt.Sprint(i)), 1, false); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	testhelp.WaitFor(t, 10*time.Second, "all reports", func() bool { return len(flaky.received()) == writers*each })
	next := map[string]int{}
	for _, m := range flaky.received() {
		if m.payload != fmt.Sprint(next[m.topic]) {
			t.Fatalf("writer %s: got %s, want %d (per-writer order broken)", m.topic, m.payload, next[m.topic])
		}
		next[m.topic]++
	}
}
