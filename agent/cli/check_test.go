package cli

import (
	"bufio"
	"bytes"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/driftline/driftline/agent"
	"github.com/driftline/driftline/agent/devicedb"
	"github.com/driftline/driftline/agent/quarantine"
	"github.com/driftline/driftline/shared/contract"
)

// offlineData is the pipeline package's test data for the offline commands.
const offlineData = "../pipeline/testdata/check/"

func offlineMain(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = Main(args, &out, &errb)
	t.Logf("driftline-agent %s -> %d\nstdout:\n%s\nstderr: %s", strings.Join(args, " "), code, out.String(), errb.String())
	return code, out.String(), errb.String()
}

func TestCheckExitCodes(t *testing.T) {
	c := offlineData + "contract.json"
	cases := []struct {
		name string
		args []string
		code int
		// stdoutHas / stderrHas must appear in the output.
		stdoutHas, stderrHas []string
	}{
		{"clean", []string{"check", "--contract", c, "--reference", offlineData + "ref.csv", offlineData + "clean.csv"}, 0,
			[]string{`"rows": 120`, `"dataset_drift": false`}, nil},
		{"drift", []string{"check", "--contract", c, "--reference", offlineData + "ref.csv", offlineData + "drifted.csv"}, 1,
			[]string{`"dataset_drift": true`}, nil},
		{"invalid rows", []string{"check", "--contract", c, offlineData + "invalid.csv"}, 1,
			[]string{`"invalid_rows": 3`, `"rule": "maximum"`}, nil},
		{"text summary", []string{"check", "--contract", c, "-o", "text", offlineData + "clean.csv"}, 0,
			[]string{"clean: 120 rows, 120 valid, 0 invalid", "drift: no reference given"}, nil},
		{"bad contract lists every problem", []string{"check", "--contract", offlineData + "bad-contract.json", offlineData + "clean.csv"}, 2,
			nil, []string{"3 problem(s)", "fields[0].type", "fields[0].constraints.maximun", "fields[1].constraints.pattern"}},
		{"unreadable data", []string{"check", "--contract", c, offlineData + "nope.csv"}, 2, nil, []string{"no such file"}},
		{"no contract", []string{"check", offlineData + "clean.csv"}, 2, nil, nil},
		{"bad output format", []string{"check", "--contract", c, "-o", "yaml", offlineData + "clean.csv"}, 2, nil, nil},
		{"two data files", []string{"check", "--contract", c, offlineData + "clean.csv", offlineData + "ref.csv"}, 2, nil, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := offlineMain(t, tc.args...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d", code, tc.code)
			}
			for _, s := range tc.stdoutHas {
				if !strings.Contains(out, s) {
					t.Errorf("stdout lacks %q:\n%s", s, out)
				}
			}
			for _, s := range tc.stderrHas {
				if !strings.Contains(errs, s) {
					t.Errorf("stderr lacks %q", s)
				}
			}
			if tc.code != 2 && !strings.Contains(strings.Join(tc.args, " "), "text") && !json.Valid([]byte(out)) {
				t.Errorf("stdout is not JSON:\n%s", out)
			}
		})
	}
}

func TestProfileThenCheckCommands(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "ref.profile")
	c := offlineData + "contract.json"
	if code, _, _ := offlineMain(t, "profile", offlineData+"ref.csv", "-o", p, "--contract", c, "--calibrate", "100"); code != 0 {
		t.Fatalf("profile exit %d", code)
	}
	if code, _, _ := offlineMain(t, "check", "--contract", c, "--profile", p, offlineData+"clean.csv"); code != 0 {
		t.Fatalf("check clean exit %d", code)
	}
	if code, _, _ := offlineMain(t, "check", "--contract", c, "--profile", p, offlineData+"drifted.csv"); code != 1 {
		t.Fatalf("check drifted exit %d", code)
	}
	// Without a contract the types are guessed: the profile still drives a check of the
	// numeric column.
	q := filepath.Join(dir, "inferred.profile")
	if code, _, _ := offlineMain(t, "profile", offlineData+"ref.csv", "-o", q); code != 0 {
		t.Fatalf("profile without contract exit %d", code)
	}
	if code, _, _ := offlineMain(t, "profile", offlineData+"ref.csv"); code != 2 {
		t.Fatalf("profile without -o: exit %d", code)
	}
	if code, _, _ := offlineMain(t, "profile", offlineData+"nope.csv", "-o", q); code != 2 {
		t.Fatalf("profile of a missing file: exit %d", code)
	}
}

func TestQuarantineCommands(t *testing.T) {
	dir := t.TempDir()
	db, err := devicedb.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	q, err := quarantine.Open(agent.ExtensionState(db.Root()).Sub(quarantine.Namespace), quarantine.Options{MaxRows: 2})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for i, v := range []string{"900", "-70", "abc"} {
		e := quarantine.FromViolations(at, "mqtt", int64(i+1), []contract.Violation{{Row: int64(i + 1), Field: "temp", Rule: "maximum", Value: v}})
		if err := q.Add(e); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	code, out, _ := offlineMain(t, "quarantine", "export", "--state-dir", dir)
	if code != 0 {
		t.Fatalf("export exit %d", code)
	}
	var rows []int64
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var e quarantine.Entry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("export line %q: %v", sc.Text(), err)
		}
		if e.Source != "mqtt" || len(e.Violations) != 1 || e.Violations[0].Field != "temp" {
			t.Fatalf("entry %+v", e)
		}
		rows = append(rows, e.Row)
	}
	if len(rows) != 2 || rows[0] != 2 || rows[1] != 3 {
		t.Fatalf("exported rows %v, want the newest two", rows)
	}
	code, out, _ = offlineMain(t, "quarantine", "list", "--state-dir", dir)
	if code != 0 || !strings.Contains(out, `"abc"`) || !strings.Contains(out, "2 rows held, 1 evicted") {
		t.Fatalf("list exit %d:\n%s", code, out)
	}
	if code, _, _ := offlineMain(t, "quarantine", "list"); code != 2 {
		t.Fatalf("list without --state-dir: exit %d", code)
	}
	if code, _, _ := offlineMain(t, "quarantine", "list", "--state-dir", filepath.Join(dir, "nope")); code != 2 {
		t.Fatalf("list of a missing dir: exit %d", code)
	}
}
