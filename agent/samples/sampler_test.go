package samples

import (
	"encoding/json"
	"io"
	"log/slog"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/driftline/driftline/agent/devicedb"
	"github.com/driftline/driftline/shared/contract"
	"github.com/driftline/driftline/shared/wire"
)

// reporter collects the sample uploads' frames and reassembles each upload: msgs are the
// whole samples (their JSON), frames the frames as queued.
type reporter struct {
	mu     sync.Mutex
	msgs   [][]byte
	frames [][]byte
	open   map[string]*wire.Object
}

func (r *reporter) Report(k wire.Kind, topic string, b []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if k != wire.KindSamplePart || topic != "dl/v1/dev/d1/sample_part" {
		panic("unexpected report " + topic)
	}
	r.frames = append(r.frames, append([]byte(nil), b...))
	f, err := wire.DecodeFrame(b)
	if err != nil {
		panic(err)
	}
	if r.open == nil {
		r.open = map[string]*wire.Object{}
	}
	o := r.open[f.RequestID]
	if o == nil {
		if o, err = wire.NewObject(f); err != nil {
			panic(err)
		}
		r.open[f.RequestID] = o
	}
	done, err := o.Add(f)
	if err != nil {
		panic(err)
	}
	if done {
		r.msgs = append(r.msgs, append([]byte(nil), o.Bytes()...))
		delete(r.open, f.RequestID)
	}
	return nil
}

func schema(t testing.TB, collect bool) *contract.Schema {
	doc := `{"fields":[{"name":"x","type":"number"},{"name":"s","type":"string"}]`
	if collect {
		doc += `,"x-driftline":{"collect":true}`
	}
	s, err := contract.Parse([]byte(doc + "}"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func newSampler(t testing.TB, rep *reporter, maxRows int, budget int64, now func() time.Time) *Sampler {
	db, err := devicedb.OpenInMemory()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	s, err := New(Options{DeviceID: "d1", Reporter: rep, State: db.Namespace("samples"), MaxRows: maxRows,
		MaxBytesPerDay: budget, Now: now, Seed: 42, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var ref = wire.ModelRef{Model: "m", Version: 1}

func window(i int64) (wire.Header, wire.Window) {
	return wire.Header{DeviceID: "d1", TS: 1_700_000_000_000 + i}, wire.Window{Index: i, WindowStart: 1_700_000_000_000, WindowEnd: 1_700_000_000_000 + i}
}

func feed(s *Sampler, sc *contract.Schema, n int) {
	for i := range n {
		s.Row(sc, []contract.Value{{Kind: contract.KindNumber, Num: float64(i)}, {Kind: contract.KindString, Str: "v"}})
	}
}

// Each row of a window lands in the reservoir with probability maxRows/rows: over many windows
// every position is kept about equally often (chi-square over 10 position bins).
func TestReservoirIsUniform(t *testing.T) {
	rep := &reporter{}
	s := newSampler(t, rep, 20, 1<<30, time.Now)
	sc := schema(t, true)
	const rows, windows = 1000, 400
	bins := make([]float64, 10)
	for w := range int64(windows) {
		feed(s, sc, rows)
		h, win := window(w + 1)
		s.Close(sc, h, win, ref, true, "input_drift", 0)
	}
	if len(rep.msgs) != windows {
		t.Fatalf("%d samples for %d drifted windows", len(rep.msgs), windows)
	}
	for _, b := range rep.msgs {
		m, err := wire.DecodeSample(b)
		if err != nil {
			t.Fatal(err)
		}
		if len(m.Rows) != 20 || m.WindowRows != rows {
			t.Fatalf("sample of %d rows of %d", len(m.Rows), m.WindowRows)
		}
		for _, r := range m.Rows {
			var row struct {
				X float64 `json:"x"`
				S string  `json:"s"`
			}
			if err := json.Unmarshal(r, &row); err != nil || row.S != "v" {
				t.Fatalf("row %s: %v", r, err)
			}
			bins[int(row.X)/100]++
		}
	}
	expected := float64(20*windows) / 10
	chi := 0.0
	for _, o := range bins {
		chi += (o - expected) * (o - expected) / expected
	}
	// 9 degrees of freedom: P(chi2 > 27.9) = 0.001.
	if chi > 27.9 || math.IsNaN(chi) {
		t.Fatalf("reservoir positions %v (chi-square %.1f): not uniform", bins, chi)
	}
}

func TestNothingWithoutOptInOrDrift(t *testing.T) {
	rep := &reporter{}
	s := newSampler(t, rep, 20, 1<<30, time.Now)
	closed := schema(t, false)
	feed(s, closed, 100)
	if len(s.kept) != 0 {
		t.Fatalf("kept %d rows of a contract that does not allow collection", len(s.kept))
	}
	h, win := window(1)
	s.Close(closed, h, win, ref, true, "input_drift", 0)
	open := schema(t, true)
	feed(s, open, 100)
	s.Close(open, h, win, ref, false, "input_drift", 0) // no drift
	if len(rep.msgs) != 0 {
		t.Fatalf("%d samples sent", len(rep.msgs))
	}
}

// The daily budget bounds the bytes sent; the next UTC day has a fresh budget.
func TestDailyBudget(t *testing.T) {
	rep := &reporter{}
	now := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	s := newSampler(t, rep, 50, 6000, func() time.Time { return now })
	sc := schema(t, true)
	sent := 0
	for w := range int64(10) {
		feed(s, sc, 500)
		h, win := window(w + 1)
		s.Close(sc, h, win, ref, true, "input_drift", 0)
	}
	for _, m := range rep.msgs {
		sent += len(m)
	}
	if sent > 6000 || len(rep.msgs) == 0 {
		t.Fatalf("sent %d bytes in %d samples against a budget of 6000", sent, len(rep.msgs))
	}
	before := len(rep.msgs)
	now = now.Add(24 * time.Hour)
	feed(s, sc, 500)
	h, win := window(11)
	s.Close(sc, h, win, ref, true, "input_drift", 0)
	if len(rep.msgs) != before+1 {
		t.Fatal("no sample on a new day")
	}
}

// Predictions that drifted make the open input window sampled once, with its reason.
func TestPredictionDriftSamplesTheInputWindow(t *testing.T) {
	rep := &reporter{}
	s := newSampler(t, rep, 20, 1<<30, time.Now)
	sc := schema(t, true)
	feed(s, sc, 100)
	s.PredictionDrift()
	h, win := window(1)
	s.Close(sc, h, win, ref, false, "input_drift", 0)
	feed(s, sc, 100)
	h, win = window(2)
	s.Close(sc, h, win, ref, false, "input_drift", 0) // the flag is spent
	if len(rep.msgs) != 1 {
		t.Fatalf("%d samples, want 1", len(rep.msgs))
	}
	m, err := wire.DecodeSample(rep.msgs[0])
	if err != nil || m.Reason != "prediction_drift" || m.Index != 1 {
		t.Fatalf("sample %+v (%v)", m, err)
	}
}

// Invalid rows go to their own reservoir (MaxRows/4), as read, and travel with the sample.
func TestInvalidRowsSampledApart(t *testing.T) {
	rep := &reporter{}
	s := newSampler(t, rep, 20, 1<<30, time.Now)
	sc := schema(t, true)
	feed(s, sc, 100)
	for i := range 30 {
		row := contract.RawRow{Num: int64(i + 1), Cells: []contract.RawCell{{Kind: contract.RawString, Data: []byte("hot")}, {}},
			Extra: []contract.RawExtra{{Name: []byte("extra"), Value: []byte("x")}}}
		s.Invalid(sc, &row)
	}
	s.Invalid(sc, &contract.RawRow{ParseErr: "bad json", Text: []byte("{oops")})
	h, win := window(1)
	s.Close(sc, h, win, ref, true, "input_drift", 31)
	m, err := wire.DecodeSample(rep.msgs[0])
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Rows) != 20 || len(m.InvalidRows) != 5 || m.Invalid != 31 {
		t.Fatalf("%d rows, %d invalid rows, invalid %d", len(m.Rows), len(m.InvalidRows), m.Invalid)
	}
	for _, r := range m.InvalidRows {
		var row map[string]any
		if err := json.Unmarshal(r, &row); err != nil {
			t.Fatal(err)
		}
		if row["_row"] == nil && (row["x"] != "hot" || row["s"] != nil || row["extra"] != "x") {
			t.Fatalf("invalid row %s", r)
		}
	}
	// A contract without the opt-in keeps no invalid row either.
	closed := schema(t, false)
	s.Invalid(closed, &contract.RawRow{Cells: []contract.RawCell{{Kind: contract.RawString, Data: []byte("hot")}, {}}})
	if len(s.bad) != 0 {
		t.Fatal("kept an invalid row of a contract without the opt-in")
	}
}
