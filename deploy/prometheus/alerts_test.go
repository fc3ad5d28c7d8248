package alerts

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// promtool returns the path of promtool, or skips loudly (fails under DRIFTLINE_INTEGRATION=1,
// where make ci-deps has installed Debian's prometheus package).
func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("DRIFTLINE_INTEGRATION") == "1" {
			t.Fatal("promtool is not installed (make ci-deps installs Debian's prometheus package)")
		}
		t.Skip("SKIPPED: promtool is not installed (apt-get install prometheus, or make ci-deps)")
	}
	return p
}

func run(t *testing.T, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, promtool(t), args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	t.Logf("promtool %s:\n%s", strings.Join(args, " "), out)
}

// TestRulesCheck: promtool accepts the rules file.
func TestRulesCheck(t *testing.T) { run(t, "check", "rules", "alerts.yml") }

// TestRulesUnit: every alert fires and clears as alerts_test.yml says.
func TestRulesUnit(t *testing.T) { run(t, "test", "rules", "alerts_test.yml") }

var metricName = regexp.MustCompile(`\bdriftline_[a-z0-9_]+`)

// TestRulesUseExportedMetrics: each metric an alert reads is exported by the hub or the agent (a
// renamed metric would silently never fire), and each alert has a unit test.
func TestRulesUseExportedMetrics(t *testing.T) {
	b, err := os.ReadFile("alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	exported := map[string]bool{}
	for _, dir := range []string{"../../hub", "../../agent", "../../shared"} {
		err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			src, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			for _, m := range regexp.MustCompile(`"(driftline_[a-z0-9_]+)"`).FindAllSubmatch(src, -1) {
				exported[string(m[1])] = true
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	tests, err := os.ReadFile("alerts_test.yml")
	if err != nil {
		t.Fatal(err)
	}
	alerts := 0
	for _, g := range doc.Groups {
		for _, r := range g.Rules {
			alerts++
			for _, m := range metricName.FindAllString(r.Expr, -1) {
				if !exported[m] {
					t.Errorf("alert %s reads %s, which neither hub nor agent exports", r.Alert, m)
				}
			}
			if !strings.Contains(string(tests), "alertname: "+r.Alert) {
				t.Errorf("alert %s has no unit test in alerts_test.yml", r.Alert)
			}
		}
	}
	if alerts < 8 {
		t.Fatalf("only %d alerts in alerts.yml", alerts)
	}
}
