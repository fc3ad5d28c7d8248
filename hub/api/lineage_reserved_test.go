package api_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/driftline/driftline/hub/state"
)

// TestOpenLineageReservedNamespace: an outside event cannot forge the provenance of registry
// objects through the `driftline` namespace: no job in it, no output in it, and inputs only of
// versions that exist. Other namespaces are untouched.
func TestOpenLineageReservedNamespace(t *testing.T) {
	h := startHub(t, nil)
	pub := h.token("pub", state.RolePublisher)
	h.pushDataset("temps", "")
	h.pushModel("fraud", pub, []byte("model"), "")
	with := func(mut func(ev map[string]any)) map[string]any {
		ev := loadEvent(t)
		mut(ev)
		return ev
	}
	ds := func(ns, name string) []any { return []any{map[string]any{"namespace": ns, "name": name}} }
	cases := []struct {
		name  string
		ev    map[string]any
		field string
	}{
		{"job in the reserved namespace", with(func(ev map[string]any) { ev["job"].(map[string]any)["namespace"] = "driftline" }), "job.namespace"},
		{"forged model output", with(func(ev map[string]any) { ev["outputs"] = ds("driftline", "model:fraud@1") }), "outputs[0].namespace"},
		{"forged dataset output", with(func(ev map[string]any) { ev["outputs"] = ds("driftline", "temps@2") }), "outputs[0].namespace"},
		{"input of no such version", with(func(ev map[string]any) { ev["inputs"] = ds("driftline", "temps@9") }), "inputs[0].name"},
		{"input of another kind", with(func(ev map[string]any) { ev["inputs"] = ds("driftline", "device:d1@1") }), "inputs[0].name"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			wantProblem(t, h.do("POST", "/api/v1/openlineage", pub, c.ev), http.StatusBadRequest, c.field)
		})
	}
	// Consuming registered versions is lineage an outside job may record.
	ev := with(func(ev map[string]any) {
		ev["inputs"] = []any{map[string]any{"namespace": "driftline", "name": "temps@1"}, map[string]any{"namespace": "driftline", "name": "model:fraud@1"}}
	})
	h.must(http.StatusCreated, "POST", "/api/v1/openlineage", pub, ev, nil)
	var g state.Graph
	h.must(http.StatusOK, "GET", "/api/v1/lineage?node="+url.QueryEscape("model:fraud@1"), h.admin, nil, &g)
	if got := strings.Join(edgeSet(g), "\n"); !strings.Contains(got, "-consumed-> model:fraud@1") {
		t.Errorf("model:fraud@1 edges: %s", got)
	}
}
