package cli

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/driftline/driftline/hub/state"
)

func (a *app) lineageCmd() *cobra.Command {
	var direction string
	var depth int
	var edges bool
	cmd := &cobra.Command{
		Use:   "lineage NODE [--direction up|down|both] [--depth N]",
		Short: "Walk the lineage graph from NODE (dataset:NAME@V, model:NAME@V, rollout:ID, device:ID, job:NS/NAME)",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch direction {
			case "up", "down", "both":
			default:
				return usagef("--direction %q: want up, down or both", direction)
			}
			if depth < 1 || depth > 50 {
				return usagef("--depth %d: want 1 to 50", depth)
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			q := url.Values{"node": {args[0]}, "direction": {direction}, "depth": {strconv.Itoa(depth)}}
			var g state.Graph
			raw, err := c.JSON(a.ctx, http.MethodGet, "/api/v1/lineage", q, nil, &g)
			if err != nil {
				return err
			}
			if a.jsonOut() {
				return printRaw(a.stdout, raw)
			}
			if edges {
				t := newTable(a.stdout, "FROM", "EDGE", "TO", "SINCE", "UNTIL")
				for _, e := range g.Edges {
					t.row(e.From, e.Kind, e.To, when(e.Since), when(e.Until))
				}
				return t.flush()
			}
			return printTree(a.stdout, args[0], g, direction)
		},
	}
	f := cmd.Flags()
	f.StringVar(&direction, "direction", "both", "up (what NODE was made from), down (what was made from it) or both")
	f.IntVar(&depth, "depth", 3, "how many hops to walk (1-50)")
	f.BoolVar(&edges, "edges", false, "print the edge list instead of a tree")
	return cmd
}

// printTree prints the subgraph as a tree rooted at root: "-[kind]->" for edges leaving a node
// (toward what it was made from), "<-[kind]-" for edges arriving. The edge a node was reached by
// is not printed again under it; a node seen before is printed with "(see above)" and not
// expanded again, so cycles end.
func printTree(w io.Writer, root string, g state.Graph, direction string) error {
	out := map[string][]state.LineageEdge{}
	in := map[string][]state.LineageEdge{}
	for _, e := range g.Edges {
		out[e.From] = append(out[e.From], e)
		in[e.To] = append(in[e.To], e)
	}
	for _, m := range []map[string][]state.LineageEdge{out, in} {
		for _, es := range m {
			sort.Slice(es, func(i, j int) bool {
				if es[i].Kind != es[j].Kind {
					return es[i].Kind < es[j].Kind
				}
				return es[i].From+es[i].To < es[j].From+es[j].To
			})
		}
	}
	seen := map[string]bool{}
	type edgeKey struct{ from, to, kind string }
	type child struct {
		label, node string
		via         edgeKey
	}
	var walk func(node, prefix string, via edgeKey) error
	walk = func(node, prefix string, via edgeKey) error {
		seen[node] = true
		var kids []child
		if direction != "down" {
			for _, e := range out[node] {
				if k := (edgeKey{e.From, e.To, e.Kind}); k != via {
					kids = append(kids, child{"-[" + e.Kind + "]-> ", e.To, k})
				}
			}
		}
		if direction != "up" {
			for _, e := range in[node] {
				if k := (edgeKey{e.From, e.To, e.Kind}); k != via {
					kids = append(kids, child{"<-[" + e.Kind + "]- ", e.From, k})
				}
			}
		}
		for i, k := range kids {
			branch, next := "├── ", "│   "
			if i == len(kids)-1 {
				branch, next = "└── ", "    "
			}
			suffix := ""
			if seen[k.node] {
				suffix = " (see above)"
			}
			if _, err := fmt.Fprintf(w, "%s%s%s%s%s\n", prefix, branch, k.label, k.node, suffix); err != nil {
				return err
			}
			if !seen[k.node] {
				if err := walk(k.node, prefix+next, k.via); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if _, err := fmt.Fprintln(w, root); err != nil {
		return err
	}
	return walk(root, "", edgeKey{})
}
