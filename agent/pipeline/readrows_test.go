package pipeline

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"

	"github.com/driftline/driftline/shared/contract"
	"github.com/driftline/driftline/shared/contract/rows"
)

// ReadRows numbers the rows from 1, wraps a read error in ErrInput naming the rows read before
// it, and returns an error from the callback as is.
func TestReadRowsNumbersAndErrors(t *testing.T) {
	s := mustSchema(t, testContract)
	broken := errors.New("disk gone")
	open := func(in string) rows.Reader {
		rd, err := rows.Open(io.MultiReader(strings.NewReader(in), iotest.ErrReader(broken)), rows.FormatJSONL, s)
		if err != nil {
			t.Fatal(err)
		}
		return rd
	}
	var got []int64
	err := ReadRows(open(`{"id":1,"temp":1}`+"\n"+`{"id":2,"temp":2}`+"\n"), func(n int64, _ *contract.RawRow) error {
		got = append(got, n)
		return nil
	})
	if !errors.Is(err, ErrInput) || !errors.Is(err, broken) || !strings.Contains(err.Error(), "after row 2:") {
		t.Fatalf("read error = %v, want ErrInput after row 2", err)
	}
	if len(got) != 2 || got[0] != 1 || got[1] != 2 {
		t.Fatalf("row numbers %v, want [1 2]", got)
	}

	stop := errors.New("stop")
	calls := 0
	err = ReadRows(open(`{"id":1,"temp":1}`+"\n"+`{"id":2,"temp":2}`+"\n"), func(int64, *contract.RawRow) error {
		calls++
		return stop
	})
	if err != stop || calls != 1 {
		t.Fatalf("callback error: got %v after %d calls, want stop after 1", err, calls)
	}

	end, err := rows.Open(strings.NewReader(`{"id":1,"temp":1}`+"\n"), rows.FormatJSONL, s)
	if err != nil {
		t.Fatal(err)
	}
	if err := ReadRows(end, func(int64, *contract.RawRow) error { return nil }); err != nil {
		t.Fatalf("end of stream: %v", err)
	}
}

// Pin refreshes the generation only while no stream holds one, counts each stream that got one
// and uncounts it on release; with no generation it counts nothing.
func TestPinRefreshesOnlyWhenIdle(t *testing.T) {
	var mu sync.Mutex
	inflight, refreshes := 0, 0
	var cur *int
	gen := 7
	refresh := func() { refreshes++ }
	current := func() *int { return cur }

	if g, release := Pin(&mu, &inflight, refresh, current); g != nil || release != nil || inflight != 0 || refreshes != 1 {
		t.Fatalf("no generation: g=%v release set=%v inflight=%d refreshes=%d", g, release != nil, inflight, refreshes)
	}
	cur = &gen
	g1, release1 := Pin(&mu, &inflight, refresh, current)
	g2, release2 := Pin(&mu, &inflight, refresh, current)
	if g1 != &gen || g2 != &gen || inflight != 2 || refreshes != 2 {
		t.Fatalf("two streams: inflight=%d refreshes=%d, want 2 and 2 (no refresh while one is in flight)", inflight, refreshes)
	}
	release1()
	release2()
	if inflight != 0 {
		t.Fatalf("released: inflight=%d", inflight)
	}
	if _, release := Pin(&mu, &inflight, refresh, current); refreshes != 3 {
		t.Fatalf("idle again: refreshes=%d, want 3", refreshes)
	} else {
		release()
	}
}

// RunTicks ticks until its context ends, then flushes once and returns.
func TestRunTicksTicksThenFlushes(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ticked := make(chan struct{}, 1)
	flushes := 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		RunTicks(ctx, time.Millisecond, func() {
			select {
			case ticked <- struct{}{}:
			default:
			}
		}, func() { flushes++ })
	}()
	select {
	case <-ticked:
	case <-time.After(10 * time.Second):
		t.Fatal("no tick")
	}
	if flushes != 0 {
		t.Fatal("flushed before the context ended")
	}
	cancel()
	<-done
	if flushes != 1 {
		t.Fatalf("flushes=%d, want 1", flushes)
	}
}

// ClosedWindow closes a window at its start when the clock stepped back, so its bounds stay
// ordered and the report validates.
func TestClosedWindowClampsABackwardClock(t *testing.T) {
	start := time.UnixMilli(1_700_000_000_000)
	hdr, win := ClosedWindow("edge-1", 3, start, start.Add(-time.Minute))
	if win.WindowEnd != win.WindowStart || hdr.TS != win.WindowStart || win.Index != 3 || hdr.DeviceID != "edge-1" {
		t.Fatalf("backward clock: %+v %+v", hdr, win)
	}
	if err := win.Validate(); err != nil {
		t.Fatal(err)
	}
	hdr, win = ClosedWindow("edge-1", 4, start, start.Add(time.Second))
	if win.WindowEnd-win.WindowStart != 1000 || hdr.TS != win.WindowEnd {
		t.Fatalf("forward clock: %+v %+v", hdr, win)
	}
}
