package cli

import (
	"bytes"
	"strings"
	"testing"

	"github.com/driftline/driftline/hub/state"
)

func TestLineageCommand(t *testing.T) {
	h := startHub(t)
	dir := t.TempDir()
	c := writeFile(t, dir, "c.json", []byte(testContract))
	s := writeFile(t, dir, "s.csv", []byte("temp,site\n1,a\n"))
	h.ok(t, "dataset", "create", "temps")
	h.ok(t, "dataset", "push", "temps", "--contract", c, "--sample", s)
	h.ok(t, "dataset", "push", "temps", "--contract", c, "--sample", s, "--parent", "1")
	h.ok(t, "model", "create", "m")
	h.ok(t, "model", "push", "m", "--artifact", writeFile(t, dir, "a.bin", []byte("w")), "--trained-on", "temps@2")

	tree := h.ok(t, "lineage", "model:m@1", "--direction", "up")
	for _, want := range []string{"model:m@1\n", "-[trained_on]-> dataset:temps@2", "-[derived_from]-> dataset:temps@1"} {
		if !strings.Contains(tree, want) {
			t.Errorf("lineage tree lacks %q:\n%s", want, tree)
		}
	}
	var g state.Graph
	h.okJSON(t, &g, "lineage", "dataset:temps@1", "--direction", "down", "--depth", "1")
	if len(g.Edges) != 1 || g.Edges[0].From != "dataset:temps@2" {
		t.Errorf("lineage down depth 1 from temps@1: %+v", g.Edges)
	}
	if edges := h.ok(t, "lineage", "dataset:temps@2", "--edges"); !strings.Contains(edges, "derived_from") || !strings.Contains(edges, "trained_on") {
		t.Errorf("edge list:\n%s", edges)
	}
	for _, args := range [][]string{
		{"lineage", "model:m@1", "--direction", "sideways"},
		{"lineage", "model:m@1", "--depth", "0"},
		{"lineage"},
	} {
		if r := h.run(t, args...); r.code != ExitUsage {
			t.Errorf("%v: exit %d", args, r.code)
		}
	}
	if r := h.run(t, "lineage", "nonsense"); r.code != ExitRefused || !strings.Contains(r.stderr, "field: node") {
		t.Errorf("lineage nonsense: exit %d, stderr %q", r.code, r.stderr)
	}
}

func TestPrintTreeCycles(t *testing.T) {
	g := state.Graph{Edges: []state.LineageEdge{
		{From: "a", To: "b", Kind: "x"}, {From: "b", To: "a", Kind: "y"}, {From: "c", To: "a", Kind: "z"},
	}}
	var buf bytes.Buffer
	if err := printTree(&buf, "a", g, "both"); err != nil {
		t.Fatal(err)
	}
	want := "a\n" +
		"├── -[x]-> b\n" +
		"│   └── -[y]-> a (see above)\n" +
		"├── <-[y]- b (see above)\n" +
		"└── <-[z]- c\n"
	if buf.String() != want {
		t.Errorf("tree:\n%s\nwant:\n%s", buf.String(), want)
	}
}
