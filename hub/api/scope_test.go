package api_test

import (
	"net/http"
	"testing"

	"github.com/driftline/driftline/hub/api"
)

// TestDeviceReadsOnlyItsScope: a device token reads the model version it is told to run and its
// training data, and gets 404 for every other model, version and dataset, as if they did not
// exist; other roles read everything.
func TestDeviceReadsOnlyItsScope(t *testing.T) {
	h := startHub(t, nil)
	h.pushDataset("temps", "")
	h.pushDataset("secret-data", "")
	h.pushModel("m", h.admin, []byte("model-1"), `{"trained_on":[{"dataset":"temps","version":1}]}`)
	h.pushModel("m", h.admin, []byte("model-2"), "")
	h.pushModel("other", h.admin, []byte("other-model"), `{"trained_on":[{"dataset":"secret-data","version":1}]}`)
	var dev api.DeviceCreated
	h.must(http.StatusCreated, "POST", "/api/v1/devices", h.admin, api.DeviceRequest{ID: "dev-1"}, &dev)
	h.must(http.StatusOK, "POST", "/api/v1/models/m/versions/1/approve", h.admin, map[string]string{"comment": "ok"}, nil)
	h.must(http.StatusOK, "PUT", "/api/v1/devices/dev-1/models/m", h.admin, api.VersionRequest{Version: ptr(1)}, nil)
	viewer := h.token("viewer", "viewer")
	for _, c := range []struct {
		path string
		want int
	}{
		{"/api/v1/models/m/versions/1", 200},
		{"/api/v1/models/m/versions/1/artifact", 200},
		{"/api/v1/datasets/temps/versions/1", 200},
		{"/api/v1/datasets/temps/versions/1/contract", 200},
		{"/api/v1/models/m/versions/2", 404},
		{"/api/v1/models/m/versions/2/artifact", 404},
		{"/api/v1/models/other/versions/1/artifact", 404},
		{"/api/v1/models/other/aliases/latest", 404},
		{"/api/v1/datasets/secret-data/versions/1", 404},
		{"/api/v1/datasets/secret-data/versions/1/contract", 404},
	} {
		if r := h.do("GET", c.path, dev.Token, nil); r.code != c.want {
			t.Errorf("device GET %s: %d, want %d: %s", c.path, r.code, c.want, r.body)
		}
		if r := h.do("GET", c.path, viewer, nil); c.path != "/api/v1/models/other/aliases/latest" && r.code != 200 {
			t.Errorf("viewer GET %s: %d: %s", c.path, r.code, r.body)
		}
	}
}
