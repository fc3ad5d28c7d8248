package cli

import (
	"bytes"
	"strings"
	"testing"
)

func run(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := Main(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestRunDryRunDeterministic(t *testing.T) {
	args := []string{"run", "--scenario", "../scenarios/bad-data.yaml", "--devices", "3", "--duration", "70s", "--seed", "7", "--dry-run", "--start", "2026-01-01T00:00:00Z"}
	c1, a, e1 := run(args...)
	c2, b, _ := run(args...)
	if c1 != 0 || c2 != 0 {
		t.Fatalf("exit %d %d: %s", c1, c2, e1)
	}
	if a != b || len(a) == 0 {
		t.Fatal("the same seed printed different bytes")
	}
	if n := strings.Count(a, "\n"); n != 3*140 {
		t.Fatalf("%d lines, want 420", n)
	}
	if !strings.HasPrefix(a, "dl/v1/dev/sim-001/data {") {
		t.Fatalf("first line %q", a[:40])
	}
	_, c, _ := run(append(args[:len(args)-4], "--seed", "8", "--dry-run", "--start", "2026-01-01T00:00:00Z")...)
	if c == a {
		t.Fatal("another seed printed the same bytes")
	}
}

func TestRunReplayFlags(t *testing.T) {
	code, out, errs := run("run", "--replay", "../scenarios/data/machine_temperature_system_failure.csv", "--field", "value", "--speed", "600x", "--dry-run", "--start", "2026-01-01T00:00:00Z")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if n := strings.Count(out, "\n"); n != 22695 {
		t.Fatalf("%d lines", n)
	}
}

func TestRunUsage(t *testing.T) {
	cases := [][]string{
		{"run"},
		{"run", "--replay", "x.csv"},
		{"run", "--scenario", "../scenarios/steady.yaml", "--dry-run"},
		{"run", "--scenario", "../scenarios/steady.yaml", "--bogus"},
		{"run", "--replay", "../scenarios/data/machine_temperature_system_failure.csv", "--field", "value", "--speed", "fast"},
	}
	for _, args := range cases {
		if code, _, errs := run(args...); code != 2 {
			t.Fatalf("%v: exit %d, want 2 (%s)", args, code, errs)
		}
	}
	if code, _, errs := run("run", "--scenario", "missing.yaml"); code != 1 || !strings.Contains(errs, "missing.yaml") {
		t.Fatalf("missing file: exit %d: %s", code, errs)
	}
}

func TestFleetUsage(t *testing.T) {
	t.Setenv("DRIFTLINE_HUB", "")
	t.Setenv("DRIFTLINE_TOKEN", "")
	for _, args := range [][]string{
		{"fleet"},
		{"fleet", "--devices", "2"},
		{"fleet", "--devices", "2", "--hub", "http://127.0.0.1:1"},
		{"fleet", "--devices", "0", "--hub", "http://127.0.0.1:1", "--token", "t"},
		{"fleet", "--devices", "2", "--hub", "http://127.0.0.1:1", "--token", "t", "--log-level", "loud"},
	} {
		if code, _, errs := run(args...); code != 2 {
			t.Fatalf("%v: exit %d, want 2 (%s)", args, code, errs)
		}
	}
	// A hub that is not there is a failure, not a usage error.
	code, _, errs := run("fleet", "--devices", "1", "--hub", "http://127.0.0.1:1", "--token", "t", "--state-dir", t.TempDir())
	if code != 1 || !strings.Contains(errs, "hub") {
		t.Fatalf("exit %d: %s", code, errs)
	}
}
