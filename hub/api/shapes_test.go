package api_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/driftline/driftline/hub/api"
	"github.com/driftline/driftline/hub/state"
)

// TestRemoveUnknownNode: removing a node that is not a member of the cluster answers 404
// (problem+json) and leaves the cluster as it was.
func TestRemoveUnknownNode(t *testing.T) {
	h := startHub(t, nil)
	p := wantProblem(t, h.do("DELETE", "/api/v1/cluster/nodes/ghost", h.admin, nil), http.StatusNotFound, "id")
	if p.Type != api.ProblemNotFound {
		t.Errorf("problem type %q, want %q", p.Type, api.ProblemNotFound)
	}
	var cs api.ClusterStatus
	h.must(http.StatusOK, "GET", "/api/v1/cluster", h.admin, nil, &cs)
	if len(cs.Nodes) != 1 || cs.Leader == nil {
		t.Errorf("cluster after the refused removal = %+v, want the one node, leading", cs)
	}
}

// TestDeviceShapeBeforeFirstContact: a device that never connected answers "last_seen": null
// (and "first_seen": null), and a model pinned for it that it has not reported yet shows as
// reported.models.NAME with "active": null and "state": "pending", as the SPEC's shape says,
// in GET /devices/{id} and in the list.
func TestDeviceShapeBeforeFirstContact(t *testing.T) {
	h := startHub(t, nil)
	h.must(http.StatusCreated, "POST", "/api/v1/devices", h.admin, api.DeviceRequest{ID: "dev-1"}, nil)
	pub := h.token("pub", state.RolePublisher)
	appr := h.token("appr", state.RoleApprover)
	h.pushModel("m", pub, []byte("model bytes"), "")
	h.must(http.StatusOK, "POST", "/api/v1/models/m/versions/1/approve", appr, nil, nil)
	h.must(http.StatusOK, "PUT", "/api/v1/devices/dev-1/models/m", h.admin, api.VersionRequest{Version: ptr(1)}, nil)

	type shape struct {
		LastSeen  json.RawMessage `json:"last_seen"`
		FirstSeen json.RawMessage `json:"first_seen"`
		Reported  struct {
			Models map[string]map[string]json.RawMessage `json:"models"`
		} `json:"reported"`
	}
	check := func(what string, d shape) {
		t.Helper()
		if string(d.LastSeen) != "null" || string(d.FirstSeen) != "null" {
			t.Errorf("%s: last_seen %s, first_seen %s; want null for a device that never connected", what, d.LastSeen, d.FirstSeen)
		}
		m, ok := d.Reported.Models["m"]
		if !ok {
			t.Fatalf("%s: reported.models has no pinned model m: %v", what, d.Reported.Models)
		}
		if a, ok := m["active"]; !ok || string(a) != "null" {
			t.Errorf("%s: reported.models.m.active = %s (present %v), want null", what, a, ok)
		}
		if string(m["state"]) != `"pending"` {
			t.Errorf("%s: reported.models.m.state = %s, want \"pending\"", what, m["state"])
		}
	}
	var one shape
	h.must(http.StatusOK, "GET", "/api/v1/devices/dev-1", h.admin, nil, &one)
	check("GET /devices/dev-1", one)
	var list struct {
		Items []shape `json:"items"`
	}
	h.must(http.StatusOK, "GET", "/api/v1/devices", h.admin, nil, &list)
	if len(list.Items) != 1 {
		t.Fatalf("list has %d devices, want 1", len(list.Items))
	}
	check("GET /devices", list.Items[0])
}
