package api_test

import (
	"net/http"
	"sort"
	"strings"
	"testing"

	"github.com/driftline/driftline/hub/api"
	"github.com/driftline/driftline/hub/state"
)

// admitted marks a cell where the role is admitted and the exact answer does not matter (only
// that it is neither 401 nor 403).
const admitted = -1

// roleCase is one row of the role table: a request and the status each role gets. Requests are
// chosen so that an admitted role gets a deterministic answer without changing shared state
// (a 400 for an empty body, a 404 for a missing object, or a read).
type roleCase struct {
	route  string // the echo route it exercises
	method string
	path   string
	body   any
	// want is the status per role: admin, viewer, publisher, approver, device, join.
	want [6]int
}

var roleOrder = [6]string{state.RoleAdmin, state.RoleViewer, state.RolePublisher, state.RoleApprover, state.RoleDevice, state.RoleJoin}

// roleTable lists every /api/v1 route. Viewer cannot write; publisher cannot approve, deprecate
// or add devices; approver cannot push; a device reads only its own record and the objects it
// needs to run a model.
var roleTable = []roleCase{
	{"/api/v1/cluster", "GET", "/api/v1/cluster", nil, [6]int{200, 200, 200, 200, 403, 403}},
	{"/api/v1/cluster/digest", "GET", "/api/v1/cluster/digest", nil, [6]int{200, 200, 200, 200, 403, 403}},
	{"/api/v1/cluster/join", "POST", "/api/v1/cluster/join", `{}`, [6]int{400, 403, 403, 403, 403, 400}},
	{"/api/v1/cluster/join-tokens", "POST", "/api/v1/cluster/join-tokens", `{"ttl_seconds":-1}`, [6]int{400, 403, 403, 403, 403, 403}},
	{"/api/v1/cluster/nodes/:id", "DELETE", "/api/v1/cluster/nodes/ghost", nil, [6]int{admitted, 403, 403, 403, 403, 403}},
	{"/api/v1/cluster/backup", "GET", "/api/v1/cluster/backup", nil, [6]int{200, 403, 403, 403, 403, 403}},
	{"/api/v1/cluster/leadership", "POST", "/api/v1/cluster/leadership", `{"to":"ghost"}`, [6]int{404, 403, 403, 403, 403, 403}},
	{"/api/v1/node", "GET", "/api/v1/node", nil, [6]int{200, 403, 403, 403, 403, 403}},

	{"/api/v1/datasets", "POST", "/api/v1/datasets", `{}`, [6]int{400, 403, 400, 403, 403, 403}},
	{"/api/v1/datasets", "GET", "/api/v1/datasets", nil, [6]int{200, 200, 200, 200, 403, 403}},
	{"/api/v1/datasets/:name", "GET", "/api/v1/datasets/temps", nil, [6]int{200, 200, 200, 200, 403, 403}},
	{"/api/v1/datasets/:name/versions", "POST", "/api/v1/datasets/temps/versions", `{}`, [6]int{415, 403, 415, 403, 403, 403}},
	{"/api/v1/datasets/:name/versions", "GET", "/api/v1/datasets/temps/versions", nil, [6]int{200, 200, 200, 200, 403, 403}},
	{"/api/v1/datasets/:name/versions/:v", "GET", "/api/v1/datasets/temps/versions/1", nil, [6]int{200, 200, 200, 200, 200, 403}},
	{"/api/v1/datasets/:name/versions/:v/contract", "GET", "/api/v1/datasets/temps/versions/1/contract", nil, [6]int{200, 200, 200, 200, 200, 403}},
	{"/api/v1/datasets/:name/versions/:v/profile", "GET", "/api/v1/datasets/temps/versions/9/profile", nil, [6]int{404, 404, 404, 404, 404, 403}},
	{"/api/v1/datasets/:name/versions/:v/sample", "GET", "/api/v1/datasets/temps/versions/1/sample", nil, [6]int{404, 404, 404, 404, 403, 403}},

	{"/api/v1/models", "POST", "/api/v1/models", `{}`, [6]int{400, 403, 400, 403, 403, 403}},
	{"/api/v1/models", "GET", "/api/v1/models", nil, [6]int{200, 200, 200, 200, 403, 403}},
	{"/api/v1/models/:name", "GET", "/api/v1/models/m", nil, [6]int{200, 200, 200, 200, 403, 403}},
	{"/api/v1/models/:name/versions", "POST", "/api/v1/models/m/versions", `{}`, [6]int{415, 403, 415, 403, 403, 403}},
	{"/api/v1/models/:name/versions", "GET", "/api/v1/models/m/versions", nil, [6]int{200, 200, 200, 200, 403, 403}},
	{"/api/v1/models/:name/versions/:v", "GET", "/api/v1/models/m/versions/1", nil, [6]int{200, 200, 200, 200, 200, 403}},
	{"/api/v1/models/:name/versions/:v/artifact", "GET", "/api/v1/models/m/versions/1/artifact", nil, [6]int{200, 200, 200, 200, 200, 403}},
	{"/api/v1/models/:name/versions/:v/approve", "POST", "/api/v1/models/m/versions/9/approve", nil, [6]int{404, 403, 403, 404, 403, 403}},
	{"/api/v1/models/:name/versions/:v/deprecate", "POST", "/api/v1/models/m/versions/9/deprecate", nil, [6]int{404, 403, 403, 404, 403, 403}},
	{"/api/v1/models/:name/versions/:v/tags", "PUT", "/api/v1/models/m/versions/9/tags", `{"tags":{}}`, [6]int{404, 403, 404, 404, 403, 403}},
	{"/api/v1/models/:name/aliases/:alias", "PUT", "/api/v1/models/m/aliases/production", `{}`, [6]int{400, 403, 400, 400, 403, 403}},
	{"/api/v1/models/:name/aliases/:alias", "GET", "/api/v1/models/m/aliases/none", nil, [6]int{404, 404, 404, 404, 404, 403}},

	{"/api/v1/devices", "POST", "/api/v1/devices", `{}`, [6]int{400, 403, 403, 403, 403, 403}},
	{"/api/v1/devices", "GET", "/api/v1/devices", nil, [6]int{200, 200, 200, 200, 403, 403}},
	{"/api/v1/devices/:id", "GET", "/api/v1/devices/dev-1", nil, [6]int{200, 200, 200, 200, 200, 403}},
	{"/api/v1/devices/:id", "GET", "/api/v1/devices/dev-2", nil, [6]int{404, 404, 404, 404, 403, 403}},
	{"/api/v1/devices/:id", "PATCH", "/api/v1/devices/dev-1", `{"labels":{"a b":"x"}}`, [6]int{400, 403, 403, 403, 403, 403}},
	{"/api/v1/devices/:id", "DELETE", "/api/v1/devices/ghost", nil, [6]int{404, 403, 403, 403, 403, 403}},
	{"/api/v1/devices/:id/token", "POST", "/api/v1/devices/ghost/token", `{}`, [6]int{404, 403, 403, 403, 403, 403}},
	{"/api/v1/devices/telemetry", "POST", "/api/v1/devices/telemetry", `{"devices":[{"id":"a b"}]}`, [6]int{400, 403, 403, 403, 403, 403}},
	{"/api/v1/devices/:id/models/:name", "PUT", "/api/v1/devices/dev-1/models/m", `{}`, [6]int{400, 403, 403, 403, 403, 403}},
	{"/api/v1/outputs", "GET", "/api/v1/outputs?model=ghost", nil, [6]int{404, 404, 404, 404, 403, 403}},
	{"/api/v1/devices/samples", "POST", "/api/v1/devices/samples", `{"sample":{"device":"a b"}}`, [6]int{400, 403, 403, 403, 403, 403}},

	{"/api/v1/rollouts", "POST", "/api/v1/rollouts", `{}`, [6]int{400, 403, 403, 400, 403, 403}},
	{"/api/v1/rollouts", "GET", "/api/v1/rollouts", nil, [6]int{200, 200, 200, 200, 403, 403}},
	{"/api/v1/rollouts/:id", "GET", "/api/v1/rollouts/ghost", nil, [6]int{404, 404, 404, 404, 403, 403}},
	{"/api/v1/rollouts/:id/devices", "GET", "/api/v1/rollouts/ghost/devices", nil, [6]int{404, 404, 404, 404, 403, 403}},
	{"/api/v1/rollouts/:id/:action", "POST", "/api/v1/rollouts/ghost/pause", nil, [6]int{404, 403, 403, 404, 403, 403}},

	{"/api/v1/tokens", "POST", "/api/v1/tokens", `{}`, [6]int{400, 403, 403, 403, 403, 403}},
	{"/api/v1/tokens", "GET", "/api/v1/tokens", nil, [6]int{200, 403, 403, 403, 403, 403}},
	{"/api/v1/tokens/:id", "DELETE", "/api/v1/tokens/ghost", nil, [6]int{404, 403, 403, 403, 403, 403}},
	{"/api/v1/models/:name/versions/:v/outputs", "PUT", "/api/v1/models/ghost/versions/1/outputs", nil, [6]int{404, 403, 404, 403, 403, 403}},
	{"/api/v1/models/:name/versions/:v/outputs", "GET", "/api/v1/models/ghost/versions/1/outputs", nil, [6]int{404, 404, 404, 404, 404, 403}},
	{"/api/v1/webhooks", "POST", "/api/v1/webhooks", `{}`, [6]int{400, 403, 403, 403, 403, 403}},
	{"/api/v1/webhooks", "GET", "/api/v1/webhooks", nil, [6]int{200, 403, 403, 403, 403, 403}},
	{"/api/v1/webhooks/:id", "GET", "/api/v1/webhooks/ghost", nil, [6]int{404, 403, 403, 403, 403, 403}},
	{"/api/v1/webhooks/:id", "DELETE", "/api/v1/webhooks/ghost", nil, [6]int{404, 403, 403, 403, 403, 403}},
	{"/api/v1/webhooks/:id/test", "POST", "/api/v1/webhooks/ghost/test", nil, [6]int{404, 403, 403, 403, 403, 403}},
	{"/api/v1/webhooks/:id/deliveries", "GET", "/api/v1/webhooks/ghost/deliveries", nil, [6]int{404, 403, 403, 403, 403, 403}},
	{"/api/v1/webhooks/:id/pending", "GET", "/api/v1/webhooks/ghost/pending", nil, [6]int{404, 403, 403, 403, 403, 403}},

	{"/api/v1/drift", "GET", "/api/v1/drift?model=ghost", nil, [6]int{admitted, admitted, admitted, admitted, 403, 403}},
	{"/api/v1/devices/:id/drift", "GET", "/api/v1/devices/ghost/drift", nil, [6]int{admitted, admitted, admitted, admitted, 403, 403}},
	{"/api/v1/drift/heatmap", "GET", "/api/v1/drift/heatmap?model=ghost", nil, [6]int{admitted, admitted, admitted, admitted, 403, 403}},
	{"/api/v1/drift/distribution", "GET", "/api/v1/drift/distribution?model=ghost&feature=x", nil, [6]int{admitted, admitted, admitted, admitted, 403, 403}},
	{"/api/v1/drift/predictions", "GET", "/api/v1/drift/predictions?model=ghost", nil, [6]int{admitted, admitted, admitted, admitted, 403, 403}},
	{"/api/v1/drift/predictions/distribution", "GET", "/api/v1/drift/predictions/distribution?model=ghost&feature=x", nil, [6]int{admitted, admitted, admitted, admitted, 403, 403}},
	{"/api/v1/lineage", "GET", "/api/v1/lineage?node=dataset:temps@1", nil, [6]int{200, 200, 200, 200, 403, 403}},
	{"/api/v1/openlineage", "POST", "/api/v1/openlineage", `{}`, [6]int{400, 403, 400, 403, 403, 403}},
	{"/api/v1/lineage", "POST", "/api/v1/lineage", `{}`, [6]int{400, 403, 400, 403, 403, 403}},
	{"/api/v1/lineage/batch", "POST", "/api/v1/lineage/batch", `[]`, [6]int{400, 403, 400, 403, 403, 403}},
	{"/api/v1/openlineage/events", "GET", "/api/v1/openlineage/events", nil, [6]int{200, 200, 200, 200, 403, 403}},
	{"/api/v1/audit", "GET", "/api/v1/audit", nil, [6]int{200, 200, 200, 200, 403, 403}},
	{"/api/v1/audit/checkpoint", "GET", "/api/v1/audit/checkpoint", nil, [6]int{200, 200, 200, 200, 403, 403}},
	{"/api/v1/audit/prune", "POST", "/api/v1/audit/prune", `{}`, [6]int{400, 403, 403, 403, 403, 403}},
	{"/api/v1/keys", "GET", "/api/v1/keys", nil, [6]int{200, 200, 200, 200, 200, 403}},
	{"/api/v1/keys/root", "GET", "/api/v1/keys/root", nil, [6]int{200, 200, 200, 200, 200, 403}},
	{"/api/v1/keys/rotate", "POST", "/api/v1/keys/rotate", nil, [6]int{admitted, 403, 403, 403, 403, 403}},
	{"/api/v1/keys/root", "POST", "/api/v1/keys/root", nil, [6]int{admitted, 403, 403, 403, 403, 403}},
	{"/api/v1/keys/:id/retire", "POST", "/api/v1/keys/ghost/retire", nil, [6]int{404, 403, 403, 403, 403, 403}},
}

// TestRoleTable runs every route as every role and checks the status each gets.
func TestRoleTable(t *testing.T) {
	h := startHub(t, nil)
	h.pushDataset("temps", "")
	h.pushModel("m", h.admin, []byte("model"), `{"trained_on":[{"dataset":"temps","version":1}]}`)
	var dev api.DeviceCreated
	h.must(http.StatusCreated, "POST", "/api/v1/devices", h.admin, api.DeviceRequest{ID: "dev-1"}, &dev)
	// The device runs m@1 (trained on temps@1): those are the registry objects it may read.
	h.must(http.StatusOK, "POST", "/api/v1/models/m/versions/1/approve", h.admin, map[string]string{"comment": "ok"}, nil)
	h.must(http.StatusOK, "PUT", "/api/v1/devices/dev-1/models/m", h.admin, api.VersionRequest{Version: ptr(1)}, nil)
	tokens := map[string]string{
		state.RoleAdmin:     h.admin,
		state.RoleViewer:    h.token("viewer", state.RoleViewer),
		state.RolePublisher: h.token("publisher", state.RolePublisher),
		state.RoleApprover:  h.token("approver", state.RoleApprover),
		state.RoleDevice:    dev.Token,
		state.RoleJoin:      h.joinToken(),
	}
	for _, c := range roleTable {
		for i, role := range roleOrder {
			t.Run(role+" "+c.method+" "+c.path, func(t *testing.T) {
				r := h.do(c.method, c.path, tokens[role], c.body)
				switch want := c.want[i]; {
				case want == admitted:
					if r.code == http.StatusUnauthorized || r.code == http.StatusForbidden {
						t.Errorf("%s was refused: %d %s", role, r.code, r.body)
					}
				case want >= 400:
					wantProblem(t, r, want, "")
				case r.code != want:
					t.Errorf("status = %d, want %d: %s", r.code, want, r.body)
				}
			})
		}
	}
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		h.must(http.StatusOK, "GET", path, "", nil, nil)
	}
}

// TestRoleTableCoversEveryRoute keeps the role table honest: a new route must get a row.
func TestRoleTableCoversEveryRoute(t *testing.T) {
	inTable := map[string]bool{}
	for _, c := range roleTable {
		inTable[c.method+" "+c.route] = true
	}
	var missing []string
	for _, r := range fullAPI().Echo().Routes() {
		if !strings.HasPrefix(r.Path, "/api/v1/") {
			continue
		}
		k := r.Method + " " + r.Path
		if !inTable[k] {
			missing = append(missing, k)
		}
		delete(inTable, k)
	}
	sort.Strings(missing)
	for _, m := range missing {
		t.Errorf("route %s has no row in roleTable", m)
	}
	for k := range inTable {
		t.Errorf("roleTable row %s names no route", k)
	}
}
