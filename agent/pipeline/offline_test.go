package pipeline

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/driftline/driftline/shared/contract"
)

var update = flag.Bool("update", false, "rewrite golden files")

const checkData = "testdata/check/"

func TestCheckGolden(t *testing.T) {
	cases := []struct {
		name  string
		opts  CheckOptions
		clean bool
	}{
		{"clean", CheckOptions{Reference: "ref.csv", Data: "clean.csv"}, true},
		{"drifted", CheckOptions{Reference: "ref.csv", Data: "drifted.csv"}, false},
		{"invalid", CheckOptions{Reference: "ref.csv", Data: "invalid.csv"}, false},
		{"no-reference", CheckOptions{Data: "clean.csv"}, true},
		{"calibrated", CheckOptions{Reference: "ref.csv", Calibrate: 100, Data: "drifted.csv"}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.opts
			o.Contract = checkData + "contract.json"
			o.Data = checkData + o.Data
			if o.Reference != "" {
				o.Reference = checkData + o.Reference
			}
			rep, err := Check(o)
			if err != nil {
				t.Fatal(err)
			}
			if rep.Clean() != tc.clean {
				t.Errorf("clean = %v, want %v", rep.Clean(), tc.clean)
			}
			got, err := json.MarshalIndent(rep, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join(checkData, tc.name+".golden.json")
			if *update {
				if err := os.WriteFile(golden, append(got, '\n'), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(bytes.TrimSpace(got), bytes.TrimSpace(want)) {
				t.Fatalf("report differs from %s:\n%s", golden, got)
			}
		})
	}
}

func TestCheckReportFields(t *testing.T) {
	rep, err := Check(CheckOptions{Contract: checkData + "contract.json", Reference: checkData + "ref.csv", Data: checkData + "invalid.csv"})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(rep)
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"rows", "valid_rows", "invalid_rows", "violations"} {
		if _, ok := m[k]; !ok {
			t.Errorf("report lacks %q", k)
		}
	}
	d := m["drift"].(map[string]any)
	for _, k := range []string{"dataset_drift", "drift_share", "features"} {
		if _, ok := d[k]; !ok {
			t.Errorf("drift lacks %q", k)
		}
	}
	temp := d["features"].(map[string]any)["temp"].(map[string]any)
	for _, k := range []string{"method", "score", "threshold", "drift", "ks", "psi", "wasserstein"} {
		if _, ok := temp[k]; !ok {
			t.Errorf("drift.features.temp lacks %q", k)
		}
	}
	if _, ok := d["features"].(map[string]any)["ts"]; ok {
		t.Error("a datetime without a drift setting was scored")
	}
	if _, ok := d["features"].(map[string]any)["label"]; ok {
		t.Error("a label was scored")
	}
	v := m["violations"].([]any)[0].(map[string]any)
	for _, k := range []string{"row", "field", "rule", "value"} {
		if _, ok := v[k]; !ok {
			t.Errorf("violation lacks %q", k)
		}
	}
}

func TestCheckBadInput(t *testing.T) {
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk.profile")
	if err := os.WriteFile(junk, []byte("not a profile"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := checkData + "contract.json"
	cases := []struct {
		name     string
		opts     CheckOptions
		problems int // > 0: a *contract.ContractError with this many problems
	}{
		{"missing data", CheckOptions{Contract: c, Data: filepath.Join(dir, "nope.csv")}, 0},
		{"unknown extension", CheckOptions{Contract: c, Data: junk}, 0},
		{"missing contract", CheckOptions{Contract: filepath.Join(dir, "nope.json"), Data: checkData + "clean.csv"}, 0},
		{"bad contract", CheckOptions{Contract: checkData + "bad-contract.json", Data: checkData + "clean.csv"}, 3},
		{"reference and profile", CheckOptions{Contract: c, Reference: checkData + "ref.csv", Profile: junk, Data: checkData + "clean.csv"}, 0},
		{"calibrate without reference", CheckOptions{Contract: c, Profile: junk, Calibrate: 10, Data: checkData + "clean.csv"}, 0},
		{"undecodable profile", CheckOptions{Contract: c, Profile: junk, Data: checkData + "clean.csv"}, 0},
		{"too few calibration windows", CheckOptions{Contract: c, Reference: checkData + "ref.csv", Calibrate: 300, Data: checkData + "clean.csv"}, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Check(tc.opts)
			if !errors.Is(err, ErrBadInput) {
				t.Fatalf("err %v, want ErrBadInput", err)
			}
			t.Log(err)
			var ce *contract.ContractError
			if tc.problems > 0 && (!errors.As(err, &ce) || len(ce.Problems) < tc.problems) {
				t.Fatalf("want a contract error with %d problems, got %v", tc.problems, err)
			}
		})
	}
}

func TestProfileThenCheck(t *testing.T) {
	s, err := LoadContract(checkData + "contract.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, calibrate := range []int{0, 100} {
		ref, sum, err := BuildProfile(s, checkData+"ref.csv", calibrate)
		if err != nil {
			t.Fatal(err)
		}
		if sum.Rows != 400 || sum.InvalidRows != 0 || ref.Rows() != 400 {
			t.Fatalf("reference summary %+v, %d rows profiled", sum, ref.Rows())
		}
		if c, _ := ref.Column("temp"); func() bool { _, ok := c.Threshold(); return ok }() != (calibrate > 0) {
			t.Fatalf("calibrate %d: threshold stored = %v", calibrate, !(calibrate > 0))
		}
		path := filepath.Join(t.TempDir(), "ref.profile")
		if err := os.WriteFile(path, ref.Encode(), 0o644); err != nil {
			t.Fatal(err)
		}
		for _, data := range []string{"clean.csv", "drifted.csv"} {
			viaProfile, err := Check(CheckOptions{Contract: checkData + "contract.json", Profile: path, Data: checkData + data})
			if err != nil {
				t.Fatal(err)
			}
			viaRows, err := Check(CheckOptions{Contract: checkData + "contract.json", Reference: checkData + "ref.csv", Calibrate: calibrate, Data: checkData + data})
			if err != nil {
				t.Fatal(err)
			}
			a, _ := json.Marshal(viaProfile)
			b, _ := json.Marshal(viaRows)
			if !bytes.Equal(a, b) {
				t.Fatalf("calibrate %d, %s: --profile and --reference disagree:\n%s\n%s", calibrate, data, a, b)
			}
		}
	}
}

func TestInferContract(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name, content string
		want          string // name:type ...
	}{
		{"a.csv", "ts,temp,on,site\n2026-01-01,1.5,true,x\n2026-01-02,,false,y\n", "ts:string temp:number on:boolean site:string"},
		{"b.jsonl", `{"temp":1,"site":"a","on":true}` + "\n" + `{"temp":2.5,"extra":null}` + "\n", "on:boolean site:string temp:number extra:string"},
	}
	for _, tc := range cases {
		path := filepath.Join(dir, tc.name)
		if err := os.WriteFile(path, []byte(tc.content), 0o644); err != nil {
			t.Fatal(err)
		}
		s, err := InferContract(path)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, f := range s.Fields {
			got = append(got, f.Name+":"+f.Type)
		}
		if strings.Join(got, " ") != tc.want {
			t.Errorf("%s: %v, want %s", tc.name, got, tc.want)
		}
	}
	for _, bad := range []string{"x.txt", "missing.csv"} {
		if _, err := InferContract(filepath.Join(dir, bad)); !errors.Is(err, ErrBadInput) {
			t.Errorf("%s: %v", bad, err)
		}
	}
}

// TestNABAnomalyDrifts: the reference is the first two weeks of the NAB machine temperature
// series; a day inside the last labelled anomaly window (the system failure) drifts through
// Check, with fixed and with calibrated thresholds, and a normal day does not once calibrated.
func TestNABAnomalyDrifts(t *testing.T) {
	f, err := os.Open("../../shared/drift/testdata/nab/machine_temperature_system_failure.csv")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	const layout = "2006-01-02 15:04:05"
	start, err := time.Parse(layout, recs[1][0])
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name string, keep func(at time.Time) bool) string {
		var b strings.Builder
		b.WriteString("timestamp,value\n")
		n := 0
		for _, r := range recs[1:] {
			at, err := time.Parse(layout, r[0])
			if err != nil {
				t.Fatal(err)
			}
			if keep(at) {
				fmt.Fprintf(&b, "%s,%s\n", r[0], r[1])
				n++
			}
		}
		t.Logf("%s: %d rows", name, n)
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	day := func(d string) func(time.Time) bool {
		from, _ := time.Parse("2006-01-02", d)
		return func(at time.Time) bool { return !at.Before(from) && at.Before(from.Add(24*time.Hour)) }
	}
	ref := write("ref.csv", func(at time.Time) bool { return at.Before(start.Add(14 * 24 * time.Hour)) })
	anomalous := write("failure.csv", day("2014-02-08"))
	normal := write("normal.csv", day("2014-01-05"))
	contractPath := filepath.Join(dir, "nab.json")
	doc := `{"fields":[{"name":"timestamp","type":"datetime","format":"%Y-%m-%d %H:%M:%S"},{"name":"value","type":"number"}]}`
	if err := os.WriteFile(contractPath, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name      string
		data      string
		calibrate int
		wantDrift bool
	}{
		{"failure day, fixed threshold", anomalous, 0, true},
		{"failure day, calibrated on days", anomalous, 288, true},
		{"normal day, calibrated on days", normal, 288, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rep, err := Check(CheckOptions{Contract: contractPath, Reference: ref, Calibrate: tc.calibrate, Data: tc.data})
			if err != nil {
				t.Fatal(err)
			}
			v := rep.Drift.Features["value"]
			t.Logf("%s: %s score %.3f threshold %.3f calibrated %v", tc.name, v.Method, v.Score, v.Threshold, v.Calibrated)
			if rep.InvalidRows != 0 || rep.Drift.DatasetDrift != tc.wantDrift || v.Calibrated != (tc.calibrate > 0) {
				t.Fatalf("rows %d invalid %d, drift %+v", rep.Rows, rep.InvalidRows, v)
			}
		})
	}
}

// FuzzInferContract: any file content gives a usable contract or an ErrBadInput, never a
// panic; a guessed contract profiles its own file.
func FuzzInferContract(f *testing.F) {
	f.Add(true, []byte("a,b\n1,x\n2,y\n"))
	f.Add(true, []byte("a,a\n1,2\n"))
	f.Add(false, []byte(`{"a":1,"b":"x","c":true}`+"\n{bad\n"))
	f.Add(false, []byte(`{"a":[1,2]}`))
	f.Fuzz(func(t *testing.T, isCSV bool, content []byte) {
		name := "in.jsonl"
		if isCSV {
			name = "in.csv"
		}
		path := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(path, content, 0o644); err != nil {
			t.Fatal(err)
		}
		s, err := InferContract(path)
		if err != nil {
			if !errors.Is(err, ErrBadInput) {
				t.Fatalf("error %v does not wrap ErrBadInput", err)
			}
			return
		}
		if _, _, err := BuildProfile(s, path, 0); err != nil && !errors.Is(err, ErrBadInput) {
			t.Fatalf("profile of the inferred contract: %v", err)
		}
	})
}
