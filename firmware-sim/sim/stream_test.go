package sim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func mustFleet(t *testing.T, yaml string, devices int, seed uint64) *Fleet {
	t.Helper()
	s, err := Parse([]byte(yaml), ".")
	if err != nil {
		t.Fatal(err)
	}
	f, err := NewFleet(s, Options{Devices: devices, Seed: seed, Start: t0})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// drain returns every message of device i.
func drain(f *Fleet, i int) []Message {
	var out []Message
	st := f.Stream(i)
	for {
		m, ok := st.Next()
		if !ok {
			return out
		}
		out = append(out, m)
	}
}

func payloads(f *Fleet) []byte {
	var b bytes.Buffer
	for i := range f.IDs() {
		for _, m := range drain(f, i) {
			b.Write(m.Payload)
			b.WriteByte('\n')
		}
	}
	return b.Bytes()
}

func TestDeterminism(t *testing.T) {
	a := payloads(mustFleet(t, goodScenario, 4, 42))
	b := payloads(mustFleet(t, goodScenario, 4, 42))
	c := payloads(mustFleet(t, goodScenario, 4, 43))
	if len(a) == 0 || !bytes.Equal(a, b) {
		t.Fatal("the same seed gave different bytes")
	}
	if bytes.Equal(a, c) {
		t.Fatal("another seed gave the same bytes")
	}
}

func TestPayloadShape(t *testing.T) {
	f := mustFleet(t, goodScenario, 2, 1)
	ms := drain(f, 1)
	if len(ms) != 20 { // 10 s at 2/s, no disconnect on dev-02
		t.Fatalf("%d messages", len(ms))
	}
	var rows []map[string]any
	if err := json.Unmarshal(ms[3].Payload, &rows); err != nil {
		t.Fatalf("payload %s: %v", ms[3].Payload, err)
	}
	if len(rows) != 3 || rows[0]["device_id"] != "dev-02" {
		t.Fatalf("rows %v", rows)
	}
	if ts := int64(rows[2]["ts"].(float64)); ts != t0.Add(1500*time.Millisecond).UnixMilli() {
		t.Fatalf("ts %d", ts)
	}
	for _, k := range []string{"temp", "hum", "mode", "vib", "pres"} {
		if _, ok := rows[0][k]; !ok {
			t.Fatalf("no %s in %v", k, rows[0])
		}
	}
	if p := rows[0]["pres"].(float64); p != math.Round(p*10)/10 {
		t.Fatalf("pres %v not rounded to 1 decimal", p)
	}
}

// base is a one-field scenario with the given event appended.
func withEvent(event string) string {
	return fmt.Sprintf(`rate: 10
duration: 20s
fields:
  - {name: x, dist: normal, mean: 10, stddev: 1, decimals: 6}
  - {name: c, dist: categorical, values: [a, b]}
events:
  - %s
`, event)
}

func TestEventEffects(t *testing.T) {
	base := drain(mustFleet(t, withEvent("{kind: nulls, field: x, at: 1000s}"), 1, 5), 0)
	cases := []struct {
		name  string
		event string
		check func(t *testing.T, before, after Row, at time.Duration)
	}{
		{"mean shift", "{kind: mean_shift, field: x, at: 10s, delta: 5}", func(t *testing.T, b, a Row, at time.Duration) {
			want := b[0].(float64)
			if at >= 10*time.Second {
				want += 5
			}
			if math.Abs(a[0].(float64)-want) > 1e-6 {
				t.Fatalf("at %v: %v, want %v", at, a[0], want)
			}
		}},
		{"variance change", "{kind: variance_change, field: x, at: 10s, duration: 5s, factor: 3}", func(t *testing.T, b, a Row, at time.Duration) {
			want := b[0].(float64)
			if at >= 10*time.Second && at < 15*time.Second {
				want = 10 + (want-10)*3
			}
			if math.Abs(a[0].(float64)-want) > 1e-5 {
				t.Fatalf("at %v: %v, want %v", at, a[0], want)
			}
		}},
		{"category swap", "{kind: category_swap, field: c, at: 10s, swap: {a: z}}", func(t *testing.T, b, a Row, at time.Duration) {
			want := b[1]
			if at >= 10*time.Second && want == "a" {
				want = "z"
			}
			if a[1] != want {
				t.Fatalf("at %v: %v, want %v", at, a[1], want)
			}
		}},
		{"nulls", "{kind: nulls, field: x, at: 10s}", func(t *testing.T, b, a Row, at time.Duration) {
			if (a[0] == nil) != (at >= 10*time.Second) || a[1] != b[1] {
				t.Fatalf("at %v: %v (before %v)", at, a, b)
			}
		}},
		{"out of range", "{kind: out_of_range, field: x, at: 10s, value: -999}", func(t *testing.T, b, a Row, at time.Duration) {
			if (a[0] == -999.0) != (at >= 10*time.Second) {
				t.Fatalf("at %v: %v", at, a[0])
			}
		}},
		{"wrong type", "{kind: wrong_type, field: c, at: 10s}", func(t *testing.T, b, a Row, at time.Duration) {
			if _, isNum := a[1].(float64); isNum != (at >= 10*time.Second) {
				t.Fatalf("at %v: %v", at, a[1])
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := drain(mustFleet(t, withEvent(c.event), 1, 5), 0)
			if len(got) != len(base) || len(got) != 200 {
				t.Fatalf("%d messages, base %d", len(got), len(base))
			}
			for i := range got {
				c.check(t, base[i].Rows[0], got[i].Rows[0], got[i].At)
				var v map[string]any
				if err := json.Unmarshal(got[i].Payload, &v); err != nil {
					t.Fatalf("payload %s: %v", got[i].Payload, err)
				}
			}
		})
	}
}

func TestEventProbabilityAndShare(t *testing.T) {
	f := mustFleet(t, withEvent("{kind: nulls, field: x, at: 0s, probability: 0.3, share: 0.5}"), 10, 9)
	affected := 0
	for i := range f.IDs() {
		nulls := 0
		ms := drain(f, i)
		for _, m := range ms {
			if m.Rows[0][0] == nil {
				nulls++
			}
		}
		if f.Selected(0, i) {
			affected++
			if share := float64(nulls) / float64(len(ms)); share < 0.2 || share > 0.4 {
				t.Fatalf("device %d: null share %v, want about 0.3", i, share)
			}
		} else if nulls != 0 {
			t.Fatalf("device %d not selected but has %d nulls", i, nulls)
		}
	}
	if affected != 5 {
		t.Fatalf("%d devices affected, want 5", affected)
	}
}

func TestMalformedJSON(t *testing.T) {
	f := mustFleet(t, withEvent("{kind: malformed_json, at: 10s}"), 1, 3)
	for _, m := range drain(f, 0) {
		bad := !json.Valid(m.Payload)
		if bad != (m.At >= 10*time.Second) || bad != m.Malformed {
			t.Fatalf("at %v: valid=%v malformed=%v %q", m.At, !bad, m.Malformed, m.Payload)
		}
	}
}

func TestDisconnect(t *testing.T) {
	f := mustFleet(t, withEvent("{kind: disconnect, at: 5s, duration: 3s, devices: [sim-002]}"), 2, 3)
	if n := len(drain(f, 0)); n != 200 {
		t.Fatalf("sim-001: %d messages", n)
	}
	ms := drain(f, 1)
	if len(ms) != 170 {
		t.Fatalf("sim-002: %d messages, want 170", len(ms))
	}
	for _, m := range ms {
		if m.At >= 5*time.Second && m.At < 8*time.Second {
			t.Fatalf("message at %v inside the disconnect", m.At)
		}
	}
	if w := f.Disconnects(1); len(w) != 1 || w[0] != (Window{5 * time.Second, 8 * time.Second}) {
		t.Fatalf("windows %v", w)
	}
	// A disconnect to the end of a long scenario ends the stream at once.
	g := mustFleet(t, "rate: 1000\nduration: 1000000s\nfields:\n  - {name: x, dist: normal}\nevents:\n  - {kind: disconnect, at: 1s, duration: 2000000s}\n", 1, 1)
	if n := len(drain(g, 0)); n != 1000 {
		t.Fatalf("%d messages", n)
	}
}

// Selected reports whether event ei applies to device i.
func (f *Fleet) Selected(ei, i int) bool { return f.selected[ei][i] }
