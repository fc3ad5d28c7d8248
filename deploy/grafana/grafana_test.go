package grafana

import (
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"gopkg.in/yaml.v3"

	"github.com/driftline/driftline/shared/wire"
)

// moduleRoot is the repository root, two levels up from deploy/grafana.
const moduleRoot = "../.."

type target struct {
	RefID      string         `json:"refId"`
	Expr       string         `json:"expr"`
	Topic      string         `json:"topic"`
	Datasource map[string]any `json:"datasource"`
}

type panel struct {
	ID         int                      `json:"id"`
	Type       string                   `json:"type"`
	Title      string                   `json:"title"`
	GridPos    struct{ H, W, X, Y int } `json:"gridPos"`
	Datasource map[string]any           `json:"datasource"`
	Targets    []target                 `json:"targets"`
	Panels     []panel                  `json:"panels"`
}

type variable struct {
	Name    string `json:"name"`
	Type    string `json:"type"`
	Query   any    `json:"query"`
	Current struct {
		Value any `json:"value"`
	} `json:"current"`
}

type dashboard struct {
	UID           string  `json:"uid"`
	Title         string  `json:"title"`
	SchemaVersion int     `json:"schemaVersion"`
	Panels        []panel `json:"panels"`
	Templating    struct {
		List []variable `json:"list"`
	} `json:"templating"`
}

func loadDashboard(t *testing.T, name string) dashboard {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("dashboards", name))
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	dec := json.NewDecoder(strings.NewReader(string(b)))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return d
}

// allPanels flattens rows.
func allPanels(ps []panel) []panel {
	var out []panel
	for _, p := range ps {
		out = append(out, p)
		out = append(out, allPanels(p.Panels)...)
	}
	return out
}

var varRE = regexp.MustCompile(`\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?`)

// TestDashboardsWellFormed checks what Grafana needs to load the files: unique uids and panel
// ids, panels inside the 24-column grid without overlaps, a data source and a query on every
// panel, and only defined template variables.
func TestDashboardsWellFormed(t *testing.T) {
	files, err := filepath.Glob("dashboards/*.json")
	if err != nil || len(files) != 2 {
		t.Fatalf("dashboards: %v %v", files, err)
	}
	uids := map[string]bool{}
	for _, f := range files {
		d := loadDashboard(t, filepath.Base(f))
		t.Run(d.UID, func(t *testing.T) {
			if d.UID == "" || d.Title == "" || d.SchemaVersion < 36 || uids[d.UID] {
				t.Fatalf("uid %q title %q schema %d (unique uid, title and a current schema required)", d.UID, d.Title, d.SchemaVersion)
			}
			uids[d.UID] = true
			vars := map[string]bool{}
			for _, v := range d.Templating.List {
				vars[v.Name] = true
			}
			ids := map[int]bool{}
			type rect struct{ x0, y0, x1, y1 int }
			var placed []rect
			var placedTitles []string
			for _, p := range allPanels(d.Panels) {
				if ids[p.ID] || p.ID == 0 {
					t.Errorf("panel %q: id %d missing or repeated", p.Title, p.ID)
				}
				ids[p.ID] = true
				g := p.GridPos
				if g.W < 1 || g.H < 1 || g.X < 0 || g.X+g.W > 24 || g.Y < 0 {
					t.Errorf("panel %q: gridPos %+v outside the 24-column grid", p.Title, g)
				}
				r := rect{g.X, g.Y, g.X + g.W, g.Y + g.H}
				for i, o := range placed {
					if r.x0 < o.x1 && o.x0 < r.x1 && r.y0 < o.y1 && o.y0 < r.y1 {
						t.Errorf("panel %q overlaps %q", p.Title, placedTitles[i])
					}
				}
				placed, placedTitles = append(placed, r), append(placedTitles, p.Title)
				if p.Type == "row" {
					continue
				}
				if p.Datasource["type"] == nil || len(p.Targets) == 0 {
					t.Errorf("panel %q has no data source or no query", p.Title)
				}
				for _, tg := range p.Targets {
					text := tg.Expr + " " + tg.Topic + " " + p.Title
					for _, m := range varRE.FindAllStringSubmatch(text, -1) {
						if !vars[m[1]] && !strings.HasPrefix(m[1], "__") {
							t.Errorf("panel %q uses undefined variable $%s", p.Title, m[1])
						}
					}
					if tg.Expr == "" && tg.Topic == "" {
						t.Errorf("panel %q target %s has neither expr nor topic", p.Title, tg.RefID)
					}
				}
			}
		})
	}
}

var metricRE = regexp.MustCompile(`\b((?:driftline|go|process)_[a-z0-9_]+)\b`)

// goMetricNames returns every string literal in the module's non-test Go code that looks like
// a Driftline metric name.
func goMetricNames(t *testing.T) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	lit := regexp.MustCompile(`^driftline_(hub|agent)_[a-z0-9_]+$`)
	fset := token.NewFileSet()
	err := filepath.WalkDir(moduleRoot, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); p != moduleRoot && (strings.HasPrefix(n, ".") || n == "testdata" || n == "node_modules" || n == "shared/data") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, p, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Logf("skipping %s: %v", p, err) // another engineer's file in the middle of an edit
			return nil
		}
		ast.Inspect(f, func(n ast.Node) bool {
			if bl, ok := n.(*ast.BasicLit); ok && bl.Kind == token.STRING {
				if s, err := strconv.Unquote(bl.Value); err == nil && lit.MatchString(s) {
					names[s] = true
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// runtimeMetricNames returns the metric families of client_golang's Go and process collectors,
// which the hub registers (and the agent too, when it serves /metrics).
func runtimeMetricNames(t *testing.T) map[string]bool {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, mf := range mfs {
		names[mf.GetName()] = true
	}
	return names
}

// TestPrometheusMetricsExist checks every metric the Prometheus dashboard queries against the
// names the Go code defines (histogram series by their family name).
func TestPrometheusMetricsExist(t *testing.T) {
	d := loadDashboard(t, "driftline-prometheus.json")
	known := goMetricNames(t)
	if len(known) < 10 {
		t.Fatalf("found only %d metric names in the Go code: the scan is broken", len(known))
	}
	for n := range runtimeMetricNames(t) {
		known[n] = true
	}
	used := map[string]bool{}
	for _, p := range allPanels(d.Panels) {
		for _, tg := range p.Targets {
			if tg.Expr == "" {
				t.Errorf("panel %q: a Prometheus target without expr", p.Title)
			}
			for _, m := range metricRE.FindAllString(tg.Expr, -1) {
				used[m] = true
				base := m
				for _, suf := range []string{"_bucket", "_sum", "_count"} {
					if b, ok := strings.CutSuffix(m, suf); ok && known[b] {
						base = b
					}
				}
				if !known[base] {
					t.Errorf("panel %q queries %s, which no Go code exports", p.Title, m)
				}
			}
		}
	}
	var unused []string
	for n := range known {
		if strings.HasPrefix(n, "driftline_") && !used[n] && !used[n+"_bucket"] && !used[n+"_count"] {
			unused = append(unused, n)
		}
	}
	sort.Strings(unused)
	t.Logf("metrics the code exports that no panel shows yet: %v", unused)
}

// TestMQTTTopicsMatchWire checks every topic of the MQTT dashboard: with its template variables
// as "+" it must be one of shared/wire's subscription filters, and with their default values it
// must parse as that kind. The telemetry the dashboard promises must all be there.
func TestMQTTTopicsMatchWire(t *testing.T) {
	d := loadDashboard(t, "driftline-mqtt.json")
	topics := wire.Default()
	filters := map[string]wire.Kind{}
	for k := wire.KindStatus; k <= wire.KindFleetDrift; k++ {
		if f := topics.AllDevices(k); f != "" {
			filters[f] = k
		}
	}
	defaults := map[string]string{}
	for _, v := range d.Templating.List {
		if s, ok := v.Current.Value.(string); ok {
			defaults[v.Name] = s
		}
	}
	covered := map[wire.Kind]bool{}
	for _, p := range allPanels(d.Panels) {
		for _, tg := range p.Targets {
			if tg.Topic == "" {
				t.Errorf("panel %q: an MQTT target without topic", p.Title)
				continue
			}
			wild := varRE.ReplaceAllString(tg.Topic, "+")
			k, ok := filters[wild]
			if !ok {
				t.Errorf("panel %q: topic %q (%q) is none of shared/wire's filters", p.Title, tg.Topic, wild)
				continue
			}
			if k.Binary() || k.FromHub() && k != wire.KindFleetRollout && k != wire.KindFleetDrift {
				t.Errorf("panel %q: topic %q carries %s, which a dashboard cannot read", p.Title, tg.Topic, k)
			}
			concrete := varRE.ReplaceAllStringFunc(tg.Topic, func(m string) string {
				return defaults[varRE.FindStringSubmatch(m)[1]]
			})
			concrete = strings.ReplaceAll(concrete, "+", "edge-1")
			got, _, _, err := topics.Parse(concrete)
			if err != nil || got != k {
				t.Errorf("panel %q: %q parses as %v (%v), want %v", p.Title, concrete, got, err, k)
			}
			covered[k] = true
		}
	}
	for _, k := range []wire.Kind{wire.KindStatus, wire.KindHeartbeat, wire.KindValidation, wire.KindDrift, wire.KindDriftFeature, wire.KindFleetRollout, wire.KindFleetDrift} {
		if !covered[k] {
			t.Errorf("no panel reads %s", k)
		}
	}
}

// TestProvisioning checks the provisioning files: the data source types the dashboards use are
// provisioned, and the dashboard provider points at a path.
func TestProvisioning(t *testing.T) {
	var ds struct {
		APIVersion  int `yaml:"apiVersion"`
		Datasources []struct {
			Name     string         `yaml:"name"`
			UID      string         `yaml:"uid"`
			Type     string         `yaml:"type"`
			URL      string         `yaml:"url"`
			JSONData map[string]any `yaml:"jsonData"`
		} `yaml:"datasources"`
	}
	readYAML(t, "provisioning/datasources/driftline.yaml", &ds)
	types := map[string]bool{}
	for _, d := range ds.Datasources {
		types[d.Type] = true
		if d.Name == "" || d.UID == "" {
			t.Errorf("data source %+v needs a name and a uid", d)
		}
		if d.Type == "grafana-mqtt-datasource" && d.JSONData["uri"] == nil {
			t.Error("the MQTT data source needs jsonData.uri")
		}
	}
	for _, f := range []string{"driftline-prometheus.json", "driftline-mqtt.json"} {
		d := loadDashboard(t, f)
		for _, p := range allPanels(d.Panels) {
			if tp, _ := p.Datasource["type"].(string); tp != "" && !types[tp] {
				t.Errorf("%s panel %q uses data source type %s, which is not provisioned", f, p.Title, tp)
			}
		}
	}
	var dp struct {
		APIVersion int `yaml:"apiVersion"`
		Providers  []struct {
			Name    string `yaml:"name"`
			Type    string `yaml:"type"`
			Options struct {
				Path string `yaml:"path"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	readYAML(t, "provisioning/dashboards/driftline.yaml", &dp)
	if dp.APIVersion != 1 || len(dp.Providers) != 1 || dp.Providers[0].Type != "file" || dp.Providers[0].Options.Path == "" {
		t.Errorf("dashboard provider: %+v", dp)
	}
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if fmt.Sprint(v) == "" {
		t.Fatalf("%s is empty", path)
	}
}
