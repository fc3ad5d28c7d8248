package grafana

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// exampleValues stand in for Grafana's variables so that promtool can parse the expressions.
var exampleValues = strings.NewReplacer(
	"$__rate_interval", "1m", "${hub_job}", "driftline-hub", "$hub_job", "driftline-hub",
	"${agent_job}", "driftline-agent", "$agent_job", "driftline-agent",
	"${instance}", ".*", "$instance", ".*", "${agent}", ".*", "$agent", ".*",
)

// TestPromQLParses writes every expression of the Prometheus dashboard into a recording-rules
// file and has promtool parse it (skipped loudly without promtool, failed under
// DRIFTLINE_INTEGRATION=1).
func TestPromQLParses(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("DRIFTLINE_INTEGRATION") == "1" {
			t.Fatal("promtool is not installed (make ci installs it)")
		}
		t.Skip("SKIPPED: promtool is not installed (make ci installs it)")
	}
	d := loadDashboard(t, "driftline-prometheus.json")
	type rule struct {
		Record string `yaml:"record"`
		Expr   string `yaml:"expr"`
	}
	var rules []rule
	for _, p := range allPanels(d.Panels) {
		for _, tg := range p.Targets {
			if tg.Expr == "" {
				continue
			}
			e := exampleValues.Replace(tg.Expr)
			if strings.Contains(e, "$") {
				t.Errorf("panel %q: %q keeps a variable the test does not know", p.Title, e)
			}
			rules = append(rules, rule{Record: fmt.Sprintf("dashboard:panel%d:%s", p.ID, strings.ToLower(tg.RefID)), Expr: e})
		}
	}
	b, err := yaml.Marshal(map[string]any{"groups": []any{map[string]any{"name": "dashboard", "rules": rules}}})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "rules.yml")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, promtool, "check", "rules", path).CombinedOutput()
	t.Logf("promtool check rules (%d expressions): %s", len(rules), out)
	if err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
}
