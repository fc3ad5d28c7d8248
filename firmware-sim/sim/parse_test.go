package sim

import (
	"errors"
	"strings"
	"testing"
)

const goodScenario = `name: all
rate: 2
batch: 3
duration: 10s
device_id: "dev-{n:02}"
fields:
  - {name: temp, dist: normal, mean: 20, stddev: 2}
  - {name: hum, dist: uniform, min: 30, max: 60}
  - {name: mode, dist: categorical, values: [idle, run], weights: [1, 3]}
  - {name: vib, dist: sine, amplitude: 1, period: 60s, noise: 0.1}
  - {name: pres, dist: random_walk, start: 100, step: 0.5, min: 90, max: 110, decimals: 1}
events:
  - {kind: mean_shift, at: 5s, field: temp, delta: 5, share: 0.5}
  - {kind: disconnect, at: 2, duration: 1s, devices: [dev-01]}
`

func TestParse(t *testing.T) {
	cases := []struct {
		name    string
		yaml    string
		wantErr error
		line    string // substring the error must contain
	}{
		{"good", goodScenario, nil, ""},
		{"defaults", "fields:\n  - {name: x, dist: normal}\n", nil, ""},
		{"empty", "", ErrSyntax, "empty"},
		{"not a mapping", "- a\n- b\n", ErrSyntax, "line 1"},
		{"bad yaml", "fields: [\n", ErrSyntax, "line"},
		{"unknown top key", "rate: 1\nbogus: 2\nfields:\n  - {name: x, dist: normal}\n", ErrSyntax, `line 2: unknown key "bogus"`},
		{"unknown field key", "fields:\n  - name: x\n    dist: normal\n    sigma: 2\n", ErrSyntax, `line 4: unknown key "sigma"`},
		{"unknown event key", "fields:\n  - {name: x, dist: normal}\nevents:\n  - kind: nulls\n    field: x\n    when: 3\n", ErrSyntax, `line 6: unknown key "when"`},
		{"bad duration", "duration: soon\nfields:\n  - {name: x, dist: normal}\n", ErrSyntax, "line 1: bad duration"},
		{"no fields", "rate: 1\n", ErrInvalid, "at least one field"},
		{"bad rate", "rate: -1\nfields:\n  - {name: x, dist: normal}\n", ErrInvalid, "line 1: rate"},
		{"bad dist", "fields:\n  - {name: x, dist: normal}\n  - {name: y, dist: gamma}\n", ErrInvalid, `line 3: field "y": unknown dist`},
		{"uniform no bounds", "fields:\n  - {name: x, dist: uniform, min: 3}\n", ErrInvalid, "line 2"},
		{"weights mismatch", "fields:\n  - {name: c, dist: categorical, values: [a, b], weights: [1]}\n", ErrInvalid, "line 2"},
		{"dup field", "fields:\n  - {name: x, dist: normal}\n  - {name: x, dist: normal}\n", ErrInvalid, "line 3"},
		{"reserved field", "fields:\n  - {name: ts, dist: normal}\n", ErrInvalid, "line 2"},
		{"bad field name", "fields:\n  - {name: a/b, dist: normal}\n", ErrInvalid, "line 2"},
		{"event unknown field", "fields:\n  - {name: x, dist: normal}\nevents:\n  - {kind: nulls, field: y}\n", ErrInvalid, `line 4: event 1 (nulls): unknown field "y"`},
		{"event unknown kind", "fields:\n  - {name: x, dist: normal}\nevents:\n  - {kind: fire}\n", ErrInvalid, "line 4"},
		{"swap on numeric", "fields:\n  - {name: x, dist: normal}\nevents:\n  - {kind: category_swap, field: x, swap: {a: b}}\n", ErrInvalid, "line 4"},
		{"disconnect no duration", "fields:\n  - {name: x, dist: normal}\nevents:\n  - {kind: disconnect, at: 3s}\n", ErrInvalid, "line 4"},
		{"share and devices", "fields:\n  - {name: x, dist: normal}\nevents:\n  - {kind: nulls, field: x, share: 0.5, devices: [a]}\n", ErrInvalid, "line 4"},
		{"share range", "fields:\n  - {name: x, dist: normal}\nevents:\n  - {kind: nulls, field: x, share: 2}\n", ErrInvalid, "line 4"},
		{"out of range no value", "fields:\n  - {name: x, dist: normal}\nevents:\n  - {kind: out_of_range, field: x}\n", ErrInvalid, "line 4"},
		{"bad id pattern", "device_id: fixed\nfields:\n  - {name: x, dist: normal}\n", ErrInvalid, "line 1"},
		{"replay needs columns", "replay: {file: a.csv}\n", ErrInvalid, "line 1: replay"},
		{"replay unknown key", "replay: {file: a.csv, colour: red}\n", ErrSyntax, "unknown key"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, err := Parse([]byte(c.yaml), ".")
			if c.wantErr == nil {
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				if s.Rate <= 0 || s.Batch < 1 || s.DeviceID == "" {
					t.Fatalf("defaults not applied: %+v", s)
				}
				return
			}
			if !errors.Is(err, c.wantErr) {
				t.Fatalf("err = %v, want %v", err, c.wantErr)
			}
			if !strings.Contains(err.Error(), c.line) {
				t.Fatalf("err = %q, want it to contain %q", err, c.line)
			}
			t.Log(err)
		})
	}
}

func TestParseLines(t *testing.T) {
	s, err := Parse([]byte(goodScenario), ".")
	if err != nil {
		t.Fatal(err)
	}
	if s.Fields[0].Line != 7 || s.Events[1].Line != 14 {
		t.Fatalf("lines: field %d, event %d", s.Fields[0].Line, s.Events[1].Line)
	}
	if got := DeviceID(s.DeviceID, 3); got != "dev-03" {
		t.Fatalf("DeviceID = %q", got)
	}
	if s.Events[1].At.D().Seconds() != 2 {
		t.Fatalf("at = %v", s.Events[1].At.D())
	}
}

func TestShippedScenarios(t *testing.T) {
	for _, name := range []string{"steady", "mean-shift", "bad-data", "flaky-network", "nab-replay"} {
		t.Run(name, func(t *testing.T) {
			s, err := ParseFile("../scenarios/" + name + ".yaml")
			if err != nil {
				t.Fatal(err)
			}
			f, err := NewFleet(s, Options{Devices: 3, Seed: 1})
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := f.Stream(0).Next(); !ok {
				t.Fatal("no first message")
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(goodScenario))
	f.Add([]byte("fields:\n  - {name: x, dist: normal}\n"))
	f.Add([]byte("replay: {file: a.csv, time_column: t, fields: [v]}\n"))
	f.Add([]byte("events: [{kind: nulls}]\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := Parse(b, ".")
		if err != nil {
			if !errors.Is(err, ErrSyntax) && !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("unclassified error: %v", err)
			}
			return
		}
		if s.Replay != nil {
			return
		}
		fl, err := NewFleet(s, Options{Devices: 2, Seed: 7})
		if err != nil {
			return
		}
		st := fl.Stream(1)
		for i := 0; i < 5; i++ {
			if _, ok := st.Next(); !ok {
				break
			}
		}
	})
}
