package dashboard_test

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/driftline/driftline/hub/state"
)

// TestLineageLayoutInBrowser lays out lineage graphs (hub/state's own types) with the lineage
// page's layout: sources left of what was made from them, the focus never folded, and a crowd
// of devices folded into one node with its edges merged.
func TestLineageLayoutInBrowser(t *testing.T) {
	b := startBrowser(t)
	b.loadDashboard()
	crowd := state.Graph{Nodes: []state.LineageNode{{ID: "dataset:temps@1", Kind: "dataset"}, {ID: "model:m@1", Kind: "model"}, {ID: "rollout:r1", Kind: "rollout"}},
		Edges: []state.LineageEdge{{From: "model:m@1", To: "dataset:temps@1", Kind: "trained_on"}, {From: "rollout:r1", To: "model:m@1", Kind: "deploys"}}}
	for i := range 100 {
		id := fmt.Sprintf("device:d%03d", i)
		crowd.Nodes = append(crowd.Nodes, state.LineageNode{ID: id, Kind: "device"})
		crowd.Edges = append(crowd.Edges, state.LineageEdge{From: id, To: "model:m@1", Kind: "runs"})
	}
	job := state.Graph{Nodes: []state.LineageNode{{ID: "job:etl/clean", Kind: "job"}, {ID: "dataset:raw@1", Kind: "dataset"}, {ID: "dataset:temps@1", Kind: "dataset"}},
		Edges: []state.LineageEdge{{From: "job:etl/clean", To: "dataset:raw@1", Kind: "consumed"}, {From: "job:etl/clean", To: "dataset:temps@1", Kind: "produced"}}}
	type placed struct {
		ID     string `json:"id"`
		Col    int    `json:"col"`
		Folded int    `json:"folded"`
	}
	type result struct {
		Nodes []placed `json:"nodes"`
		Edges int      `json:"edges"`
	}
	lay := func(g state.Graph, focus string) map[string]placed {
		t.Helper()
		js, _ := json.Marshal(g)
		r := eval[result](b, b.ctx, fmt.Sprintf(`import('/ui/js/pages/lineage.js').then((m) => {
			const l = m.layout(%s, %q);
			return { nodes: l.nodes.map((n) => ({ id: n.id, col: n.col, folded: n.folded || 0 })), edges: l.edges.length };
		})`, js, focus))
		out := map[string]placed{}
		for _, n := range r.Nodes {
			out[n.ID] = n
		}
		out["#edges"] = placed{Col: r.Edges}
		return out
	}

	g := lay(crowd, "model:m@1")
	if len(g) != 5 { // dataset, model, rollout, one folded device node, #edges
		t.Fatalf("crowd laid out as %d nodes, want 4: %v", len(g)-1, g)
	}
	if g["dataset:temps@1"].Col >= g["model:m@1"].Col || g["model:m@1"].Col >= g["rollout:r1"].Col {
		t.Errorf("columns dataset %d, model %d, rollout %d: sources must come first", g["dataset:temps@1"].Col, g["model:m@1"].Col, g["rollout:r1"].Col)
	}
	var folded placed
	for _, n := range g {
		if n.Folded > 0 {
			folded = n
		}
	}
	if folded.Folded != 100 || folded.Col != g["model:m@1"].Col+1 || g["#edges"].Col != 3 {
		t.Errorf("folded node %+v, %d edges; want 100 devices right of the model and 3 edges", folded, g["#edges"].Col)
	}

	g = lay(crowd, "device:d042")
	if n, ok := g["device:d042"]; !ok || n.Folded != 0 {
		t.Errorf("the focus device was folded: %v", g)
	}
	if g["model:m@1"].Col >= g["device:d042"].Col {
		t.Errorf("model column %d not left of its device %d", g["model:m@1"].Col, g["device:d042"].Col)
	}

	g = lay(job, "job:etl/clean")
	if !(g["dataset:raw@1"].Col < g["job:etl/clean"].Col && g["job:etl/clean"].Col < g["dataset:temps@1"].Col) {
		t.Errorf("job lineage columns %v: want input, job, output", g)
	}
	// The loop: training data -> model -> device -> drifted window -> the candidate sampled from it.
	loop := state.Graph{Nodes: []state.LineageNode{{ID: "dataset:temps@1", Kind: "dataset"}, {ID: "model:m@1", Kind: "model"},
		{ID: "device:edge-1", Kind: "device"}, {ID: "window:edge-1/m@1/1700000000000", Kind: state.KindWindow}, {ID: "dataset:temps@2", Kind: "dataset"}},
		Edges: []state.LineageEdge{{From: "model:m@1", To: "dataset:temps@1", Kind: "trained_on"}, {From: "device:edge-1", To: "model:m@1", Kind: "runs"},
			{From: "window:edge-1/m@1/1700000000000", To: "device:edge-1", Kind: state.EdgeObservedOn},
			{From: "dataset:temps@2", To: "window:edge-1/m@1/1700000000000", Kind: state.EdgeSampledFrom}}}
	g = lay(loop, "dataset:temps@1")
	if !(g["device:edge-1"].Col < g["window:edge-1/m@1/1700000000000"].Col && g["window:edge-1/m@1/1700000000000"].Col < g["dataset:temps@2"].Col) {
		t.Errorf("loop columns %v: want device, window, candidate", g)
	}
	if l := eval[string](b, b.ctx, `import('/ui/js/pages/lineage.js').then((m) => m.label({ id: 'window:edge-1/m@1/1700000000000', kind: 'window' }))`); l != "edge-1 11-14 22:13:20" {
		t.Errorf("window label %q, want its device and start", l)
	}
	if p := b.problems(); len(p) > 0 {
		t.Errorf("browser console: %v", p)
	}
}
