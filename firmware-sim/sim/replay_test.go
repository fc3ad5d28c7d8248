package sim

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestReplayStream replays a small series with a step back and a gap through a scenario, with
// an event on the replayed column and a loop.
func TestReplayStream(t *testing.T) {
	dir := t.TempDir()
	csv := "timestamp,value\n" +
		"2014-01-07 02:50:00,1\n" +
		"2014-01-07 02:55:00,2\n" +
		"2014-01-07 02:00:00,3\n" + // steps back
		"2014-01-07 09:00:00,4\n" // a 7 h gap, capped at 1 h
	if err := os.WriteFile(filepath.Join(dir, "s.csv"), []byte(csv), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := Parse([]byte(`duration: 39s
replay: {file: s.csv, time_column: timestamp, fields: [value], speed: 300, max_gap: 1h, loop: true}
events:
  - {kind: mean_shift, field: value, at: 15s, delta: 100}
`), dir)
	if err != nil {
		t.Fatal(err)
	}
	f, err := NewFleet(s, Options{Devices: 1, Seed: 1, Start: t0})
	if err != nil {
		t.Fatal(err)
	}
	ms := drain(f, 0)
	// One pass: 0 s, 1 s, 1 s (the step back), 13 s (the capped gap); the next pass starts one
	// median positive step (of 1 s and 12 s: 12 s) after the last row, at 25 s.
	wantAt := []time.Duration{0, 1, 1, 13, 25, 26, 26, 38}
	wantV := []float64{1, 2, 3, 4, 101, 102, 103, 104}
	if len(ms) != len(wantAt) {
		t.Fatalf("%d messages, want %d", len(ms), len(wantAt))
	}
	for i, m := range ms {
		if m.At != wantAt[i]*time.Second || m.Rows[0][0] != wantV[i] {
			t.Fatalf("message %d: at %v value %v, want %v %v", i, m.At, m.Rows[0][0], wantAt[i]*time.Second, wantV[i])
		}
		if i > 0 && m.TS.Before(ms[i-1].TS) {
			t.Fatalf("ts goes back at %d", i)
		}
	}
}
