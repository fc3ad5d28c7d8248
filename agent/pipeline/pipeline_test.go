package pipeline

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/driftline/driftline/agent/quarantine"
	"github.com/driftline/driftline/shared/contract"
	"github.com/driftline/driftline/shared/contract/rows"
	"github.com/driftline/driftline/shared/wire"
)

// step ingests rows (one MQTT payload), then advances the clock and ticks.
type step struct {
	rows    int
	advance time.Duration
}

// payload renders rows start.. as one JSON array payload.
func payload(start, n int, temp func(i int) float64) []byte {
	lines := strings.Split(strings.TrimSpace(jsonRows(start, n, temp)), "\n")
	return []byte("[" + strings.Join(lines, ",") + "]")
}

func constant(v float64) func(int) float64 { return func(int) float64 { return v } }

func TestWindows(t *testing.T) {
	s := mustSchema(t, testContract)
	cases := []struct {
		name     string
		window   contract.Window
		steps    []step
		wantRows []int64 // rows of each reported window
	}{
		{"by rows", contract.Window{Rows: 10, Seconds: 60}, []step{{25, 0}}, []int64{10, 10}},
		{"by time", contract.Window{Rows: 1000, Seconds: 5}, []step{{3, 2 * time.Second}, {4, 3 * time.Second}, {2, 0}}, []int64{7}},
		{"time then rows", contract.Window{Rows: 4, Seconds: 5}, []step{{3, 6 * time.Second}, {9, 0}}, []int64{3, 4, 4}},
		{"idle window is not reported", contract.Window{Rows: 4, Seconds: 5}, []step{{0, time.Hour}}, nil},
		{"default window keeps 7 rows open", contract.Window{}, []step{{7, 0}}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Options{Contract: s, Window: tc.window})
			id := 0
			for _, st := range tc.steps {
				if st.rows > 0 {
					if _, err := h.p.IngestPayload("mqtt", payload(id, st.rows, constant(20))); err != nil {
						t.Fatal(err)
					}
					id += st.rows
				}
				h.clock.Add(st.advance)
				h.p.Tick()
			}
			var got []int64
			for i, v := range h.rec.validations(t) {
				got = append(got, v.Rows)
				if v.Index != int64(i+1) || v.Invalid != 0 || v.WindowEnd < v.WindowStart || v.Model != "" {
					t.Errorf("window %d: %+v", i, v)
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.wantRows) {
				t.Fatalf("windows %v, want %v", got, tc.wantRows)
			}
			if n := len(h.rec.of(wire.KindProfile)); n != len(tc.wantRows) {
				t.Fatalf("%d profile reports for %d windows", n, len(tc.wantRows))
			}
			if n := len(h.rec.of(wire.KindDrift)); n != 0 {
				t.Fatalf("%d drift reports without a model", n)
			}
		})
	}
}

// TestContractWindowAndDefaults: each bound comes from the agent config when set, else from the
// contract's x-driftline.window, else from the default, and says which.
func TestContractWindowAndDefaults(t *testing.T) {
	withWindow := mustSchema(t, strings.Replace(testContract, `"fields"`, `"x-driftline": {"window": {"rows": 3, "seconds": 9}}, "fields"`, 1))
	rowsOnly := mustSchema(t, strings.Replace(testContract, `"fields"`, `"x-driftline": {"window": {"rows": 3}}, "fields"`, 1))
	plain := mustSchema(t, testContract)
	const cfg, ctr, def = WindowFromConfig, WindowFromContract, WindowFromDefault
	w := func(rows int, secs float64, rs, ss string) ResolvedWindow {
		return ResolvedWindow{Window: contract.Window{Rows: rows, Seconds: secs}, RowsSource: rs, SecondsSource: ss}
	}
	cases := []struct {
		cfg  contract.Window
		s    *contract.Schema
		want ResolvedWindow
	}{
		{contract.Window{}, plain, w(DefaultWindowRows, DefaultWindowSeconds, def, def)},
		{contract.Window{}, nil, w(DefaultWindowRows, DefaultWindowSeconds, def, def)},
		{contract.Window{}, withWindow, w(3, 9, ctr, ctr)},
		{contract.Window{}, rowsOnly, w(3, DefaultWindowSeconds, ctr, def)},
		{contract.Window{Rows: 5}, withWindow, w(5, 9, cfg, ctr)},
		{contract.Window{Seconds: 2}, plain, w(DefaultWindowRows, 2, def, cfg)},
		{contract.Window{Rows: 5, Seconds: 1}, withWindow, w(5, 1, cfg, cfg)},
	}
	for i, tc := range cases {
		if got := ResolveWindow(tc.cfg, tc.s); got != tc.want {
			t.Errorf("case %d: %+v, want %+v", i, got, tc.want)
		}
		if got := EffectiveWindow(tc.cfg, tc.s); got != tc.want.Window {
			t.Errorf("case %d: EffectiveWindow %+v, want %+v", i, got, tc.want.Window)
		}
	}
}

func TestInvalidRowsGoToQuarantine(t *testing.T) {
	s := mustSchema(t, testContract)
	h := newHarness(t, Options{Contract: s, Window: contract.Window{Rows: 100, Seconds: 60}})
	in := `{"id":1,"temp":20,"mode":"auto"}
{"id":2,"temp":500,"mode":"auto"}
{"id":2,"temp":20,"mode":"turbo"}
not json
{"id":4,"mode":"auto","extra":1}
{"id":5,"temp":-60.5,"mode":"manual"}
`
	sum, err := h.p.Ingest("file:a.jsonl", rows.FormatJSONL, strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if sum.Rows != 6 || sum.ValidRows != 1 || sum.InvalidRows != 5 {
		t.Fatalf("summary %+v", sum)
	}
	h.p.Flush()
	vs := h.rec.validations(t)
	if len(vs) != 1 {
		t.Fatalf("%d validation reports", len(vs))
	}
	v := vs[0]
	want := map[string]map[string]int64{
		"temp":  {"maximum": 1, "missing_column": 1, "minimum": 1},
		"id":    {"unique": 1},
		"mode":  {"enum": 1},
		"_row":  {"parse": 1},
		"extra": {"extra_column": 1},
	}
	if fmt.Sprint(v.Violations) != fmt.Sprint(want) {
		t.Fatalf("violations %v\nwant %v", v.Violations, want)
	}
	if v.Rows != 6 || v.Valid != 1 || v.Invalid != 5 || v.Quarantined != 5 || v.QuarantineEvicted != 0 {
		t.Fatalf("report %+v", v)
	}
	if st := h.p.Stats(); st != (Stats{RecordsSeen: 6, RecordsInvalid: 5, QuarantineDepth: 5}) {
		t.Fatalf("stats %+v", st)
	}
	type got struct {
		row         int64
		field, rule string
		value       string
	}
	var entries []got
	if _, err := h.q.Iterate(func(e quarantine.Entry) error {
		if e.Source != "file:a.jsonl" || e.Time.IsZero() {
			t.Errorf("entry %+v", e)
		}
		for _, x := range e.Violations {
			entries = append(entries, got{e.Row, x.Field, x.Rule, x.Value})
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	wantEntries := []got{{2, "temp", "maximum", "500"}, {3, "id", "unique", "2"}, {3, "mode", "enum", "turbo"},
		{4, "", "parse", "not json"}, {5, "temp", "missing_column", ""}, {5, "extra", "extra_column", "1"}, {6, "temp", "minimum", "-60.5"}}
	if fmt.Sprint(entries) != fmt.Sprint(wantEntries) {
		t.Fatalf("quarantine %v\nwant %v", entries, wantEntries)
	}
}

func TestUniqueResetsPerWindow(t *testing.T) {
	s := mustSchema(t, testContract)
	h := newHarness(t, Options{Contract: s, Window: contract.Window{Rows: 2, Seconds: 60}})
	// ids 1,2 | 1,2 | 2,2: the repeat across windows is fine, within a window it is not.
	for _, ids := range [][2]int{{1, 2}, {1, 2}, {2, 2}} {
		p := fmt.Sprintf(`[{"id":%d,"temp":1,"mode":"auto"},{"id":%d,"temp":1,"mode":"auto"}]`, ids[0], ids[1])
		if _, err := h.p.IngestPayload("mqtt", []byte(p)); err != nil {
			t.Fatal(err)
		}
	}
	var invalid []int64
	for _, v := range h.rec.validations(t) {
		invalid = append(invalid, v.Invalid)
	}
	if fmt.Sprint(invalid) != "[0 0 1]" {
		t.Fatalf("invalid per window %v", invalid)
	}
}

func TestDriftAgainstActiveModel(t *testing.T) {
	s := mustSchema(t, testContract)
	ref := make([]float64, 2000)
	for i := range ref {
		ref[i] = 20 + float64(i%100)/10 // 20..29.9
	}
	m := &model{}
	h := newHarness(t, Options{Contract: s, Window: contract.Window{Rows: 500, Seconds: 60}, Model: m})

	// No model: validation and profile, no drift.
	if _, err := h.p.IngestPayload("mqtt", payload(0, 500, func(i int) float64 { return 20 + float64(i%100)/10 })); err != nil {
		t.Fatal(err)
	}
	if n := len(h.rec.of(wire.KindDrift)); n != 0 {
		t.Fatalf("drift without a model: %d", n)
	}
	m.set("pump", 3, []byte(testContract), refProfile(t, s, ref))
	cases := []struct {
		name      string
		temp      func(int) float64
		wantDrift int
	}{
		{"same distribution", func(i int) float64 { return 20 + float64((i*7)%100)/10 }, 0},
		{"shifted", func(i int) float64 { return 40 + float64(i%100)/10 }, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := len(h.rec.of(wire.KindDrift))
			if _, err := h.p.IngestPayload("mqtt", payload(0, 500, tc.temp)); err != nil {
				t.Fatal(err)
			}
			ds := h.rec.of(wire.KindDrift)
			if len(ds) != before+1 {
				t.Fatalf("%d drift reports, want %d", len(ds), before+1)
			}
			d, err := wire.DecodeDrift(ds[len(ds)-1].payload)
			if err != nil {
				t.Fatal(err)
			}
			if d.Model != "pump" || d.Version != 3 || d.DatasetDrift != tc.wantDrift || d.Features != 3 {
				t.Fatalf("drift %+v", d)
			}
			fs := h.rec.of(wire.KindDriftFeature)
			last := fs[len(fs)-3:]
			byTopic := map[string]wire.DriftFeature{}
			for _, f := range last {
				var df wire.DriftFeature
				if err := json.Unmarshal(f.payload, &df); err != nil {
					t.Fatal(err)
				}
				if err := df.Validate(); err != nil {
					t.Fatal(err)
				}
				byTopic[f.topic] = df
			}
			temp, ok := byTopic["dl/v1/dev/dev-1/drift/temp"]
			if !ok || temp.Method != "wasserstein" || temp.Drift != tc.wantDrift || temp.PSI == nil || temp.KS == nil || temp.Rows != 500 {
				t.Fatalf("temp drift %+v (topics %v)", temp, byTopic)
			}
		})
	}
	// A model without a reference profile: reports carry the model, no drift.
	m.set("pump", 4, []byte(testContract), nil)
	before := len(h.rec.of(wire.KindDrift))
	if _, err := h.p.IngestPayload("mqtt", payload(0, 500, constant(25))); err != nil {
		t.Fatal(err)
	}
	vs := h.rec.validations(t)
	if v := vs[len(vs)-1]; v.Model != "pump" || v.Version != 4 || len(h.rec.of(wire.KindDrift)) != before {
		t.Fatalf("last validation %+v", v)
	}
}

func TestModelSwitchClosesWindow(t *testing.T) {
	s := mustSchema(t, testContract)
	m := &model{}
	h := newHarness(t, Options{Contract: s, Window: contract.Window{Rows: 100, Seconds: 60}, Model: m})
	if _, err := h.p.IngestPayload("mqtt", payload(0, 5, constant(20))); err != nil {
		t.Fatal(err)
	}
	// The model's contract has only temp: the old window closes under the config's contract.
	m.set("pump", 1, []byte(`{"fields":[{"name":"temp","type":"number"}]}`), nil)
	h.p.Tick()
	vs := h.rec.validations(t)
	if len(vs) != 1 || vs[0].Rows != 5 || vs[0].Model != "" {
		t.Fatalf("after switch: %+v", vs)
	}
	if _, err := h.p.IngestPayload("mqtt", []byte(`{"temp": 3}`)); err != nil {
		t.Fatal(err)
	}
	h.p.Flush()
	vs = h.rec.validations(t)
	if len(vs) != 2 || vs[1].Valid != 1 || vs[1].Model != "pump" {
		t.Fatalf("second window: %+v", vs)
	}
}

func TestNoContract(t *testing.T) {
	h := newHarness(t, Options{})
	if _, err := h.p.IngestPayload("mqtt", []byte(`{"a":1}`)); !errors.Is(err, ErrNoContract) {
		t.Fatalf("err %v, want ErrNoContract", err)
	}
	if _, err := New(Options{DeviceID: "a/b"}); !errors.Is(err, ErrBadOptions) {
		t.Fatalf("bad device id: %v", err)
	}
}

func TestSnakeRules(t *testing.T) {
	for in, want := range map[string]string{
		"exclusiveMinimum": "exclusive_minimum", "maxLength": "max_length", "primaryKey": "primary_key",
		"type": "type", "missing_column": "missing_column", "": "unknown",
	} {
		if got := snake(in); got != want {
			t.Errorf("snake(%q) = %q, want %q", in, got, want)
		}
	}
}
