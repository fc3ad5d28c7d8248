package reference

import (
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/driftline/driftline/shared/contract"
	"github.com/driftline/driftline/shared/contract/rows"
	"github.com/driftline/driftline/shared/drift"
	"github.com/driftline/driftline/shared/profile"
)

const sensorContract = `{"fields": [
  {"name": "temp", "type": "number", "constraints": {"maximum": 100}},
  {"name": "mode", "type": "string"},
  {"name": "n", "type": "integer", "x-driftline": {"drift": {"calibrate": 70}}},
  {"name": "score", "type": "number", "x-driftline": {"role": "prediction"}}],
 "x-driftline": {"drift": {"calibrate": 100, "factor": 2}}}`

// sensorCSV is n rows: temp a slow cycle plus noise, mode a/b/c/d, n small counts; every
// badEvery-th row breaks temp's maximum.
func sensorCSV(n, badEvery int) string {
	r := rand.New(rand.NewPCG(1, 2))
	var b strings.Builder
	b.WriteString("temp,mode,n,score\n")
	for i := range n {
		temp := 20 + 5*math.Sin(float64(i)/40) + r.NormFloat64()
		if badEvery > 0 && i%badEvery == badEvery-1 {
			temp = 500
		}
		fmt.Fprintf(&b, "%g,%s,%d,0.5\n", temp, []string{"a", "b", "c", "d"}[r.IntN(4)], r.IntN(5))
	}
	return b.String()
}

func parse(t *testing.T, doc string) *contract.Schema {
	t.Helper()
	s, err := contract.Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// onlyReader hides a reader's other methods, so Build must spool it.
type onlyReader struct{ io.Reader }

// TestBuildCalibrationMatchesDrift: the streaming two-pass calibration (per window size, as the
// contract groups the features) stores exactly the thresholds a drift.Calibrator learns from the
// same windows held in memory, whether Build seeks the input back or spools it.
func TestBuildCalibrationMatchesDrift(t *testing.T) {
	s := parse(t, sensorContract)
	sample := sensorCSV(1030, 97)
	// The reference rows and the windows, in memory.
	var valid [][]contract.Value
	if err := scan(strings.NewReader(sample), s, rows.FormatCSV, func(out []contract.Value, vs []contract.Violation) error {
		if len(vs) == 0 {
			valid = append(valid, append([]contract.Value(nil), out...))
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	ref, err := profile.New(drift.Columns(s))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range valid {
		if err := ref.Add(r); err != nil {
			t.Fatal(err)
		}
	}
	base, err := drift.ContractOptions(s)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]profile.Threshold{}
	for size, names := range drift.CalibrationWindows(s, 0) {
		var windows []*profile.Profile
		for i := 0; i+size <= len(valid); i += size {
			w, _ := profile.New(drift.Columns(s))
			for _, r := range valid[i : i+size] {
				_ = w.Add(r)
			}
			windows = append(windows, w)
		}
		o := base
		o.Only = names
		cal, err := drift.NewCalibrator(ref, drift.CalibrateOptions{Factor: 2, Compare: o})
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range windows {
			if err := cal.Add(w); err != nil {
				t.Fatal(err)
			}
		}
		res, err := cal.Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range res {
			want[c.Feature] = c.Threshold
		}
	}
	if len(want) != 3 {
		t.Fatalf("library calibrated %v, want temp, mode and n", want)
	}
	for name, in := range map[string]io.Reader{"seeker": strings.NewReader(sample), "stream": onlyReader{strings.NewReader(sample)}} {
		res, err := Build(s, in, rows.FormatCSV, Options{TempDir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		if res.Rows != 1030 || res.InvalidRows != 10 || res.Profile.Rows() != 1020 {
			t.Fatalf("%s: rows %d invalid %d profiled %d", name, res.Rows, res.InvalidRows, res.Profile.Rows())
		}
		for f, w := range want {
			c, _ := res.Profile.Column(f)
			got, ok := c.Threshold()
			if !ok || got.Method != w.Method || got.OnStatistic != w.OnStatistic || math.Abs(got.Value-w.Value) > 1e-12*max(1, w.Value) {
				t.Errorf("%s: %s threshold %+v, library %+v", name, f, got, w)
			}
		}
		if c, _ := res.Profile.Column("score"); func() bool { _, ok := c.Threshold(); return ok }() {
			t.Errorf("%s: the prediction is calibrated", name)
		}
		if len(res.Calibrations) != 3 || len(res.Warnings) != 0 {
			t.Errorf("%s: calibrations %v, warnings %v", name, res.Calibrations, res.Warnings)
		}
		t.Logf("%s notes: %v", name, res.Notes)
	}
}

func TestBuildRefusals(t *testing.T) {
	s := parse(t, sensorContract)
	cases := []struct {
		name, sample string
		also         error
		mentions     string
	}{
		{"empty", "", nil, "no rows"},
		{"header only", "temp,mode,n,score\n", nil, "no rows"},
		{"no valid row", "temp,mode,n,score\n500,a,1,0\n600,b,1,0\n", nil, `row 1: field "temp" breaks maximum`},
		{"columns match no field", "when,reading\n1,2\n", nil, "missing_column"},
		{"malformed", "temp,mode,n,score\n\"1,a\n", nil, "row 1:"},
		{"too few windows", sensorCSV(150, 0), drift.ErrTooFewWindows, "windows of 100 rows"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Build(s, strings.NewReader(tc.sample), rows.FormatCSV, Options{})
			if !errors.Is(err, ErrBadSample) || (tc.also != nil && !errors.Is(err, tc.also)) || !strings.Contains(err.Error(), tc.mentions) {
				t.Fatalf("err %v: want ErrBadSample mentioning %q", err, tc.mentions)
			}
			t.Log(err)
		})
	}
	// Data to check (not a reference) may have no valid row.
	res, err := Build(s, strings.NewReader("temp,mode,n,score\n500,a,1,0\n"), rows.FormatCSV, Options{Calibrate: -1, AllowNoValidRows: true})
	if err != nil || res.Rows != 1 || res.InvalidRows != 1 || res.Profile.Rows() != 0 {
		t.Fatalf("allowed empty: %+v %v", res, err)
	}
}

func TestBuildWarnsOnLowValidShare(t *testing.T) {
	s := parse(t, `{"fields": [{"name": "temp", "type": "number", "constraints": {"maximum": 100}},
	  {"name": "mode", "type": "string"}, {"name": "n", "type": "integer"}, {"name": "score", "type": "number"}]}`)
	var seen, bad int
	res, err := Build(s, strings.NewReader(sensorCSV(300, 4)), rows.FormatCSV, Options{OnRow: func(vs []contract.Violation) {
		seen++
		if len(vs) > 0 {
			bad++
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	if seen != 300 || bad != 75 || res.InvalidRows != 75 {
		t.Fatalf("OnRow saw %d rows, %d bad; result %d invalid", seen, bad, res.InvalidRows)
	}
	if len(res.Warnings) != 1 || !strings.Contains(res.Warnings[0], "225 of 300") || !strings.HasPrefix(res.Notes[0], "warning: ") {
		t.Fatalf("warnings %v notes %v", res.Warnings, res.Notes)
	}
	if len(res.Violations) != DefaultMaxViolations {
		t.Fatalf("%d violations quoted", len(res.Violations))
	}
	// 90% valid is not below the default share.
	if res, err = Build(s, strings.NewReader(sensorCSV(300, 10)), rows.FormatCSV, Options{}); err != nil || len(res.Warnings) != 0 {
		t.Fatalf("90%% valid: warnings %v, %v", res.Warnings, err)
	}
}
