package agent_test

import (
	"net/http"

	"github.com/driftline/driftline/hub/node/nodetest"
)

// The hub of these tests is nodetest.Start's one-node hub; the helpers below are what the
// agent's tests do with it beyond nodetest's own.

// enroll adds a device labelled site=test and returns its token.
func enroll(h *nodetest.Hub, id string) string {
	h.T.Helper()
	return h.Enroll(id, map[string]string{"site": "test"})
}

// assign pins model@version on device id.
func assign(h *nodetest.Hub, id, model string, version int) {
	h.T.Helper()
	h.Call(http.MethodPut, "/api/v1/devices/"+id+"/models/"+model, map[string]int{"version": version}, http.StatusOK, nil)
}

// deviceModel is what GET /api/v1/devices/{id} says about one model.
type deviceModel struct {
	Active    *int   `json:"active"`
	Previous  *int   `json:"previous"`
	State     string `json:"state"`
	LastError string `json:"last_error"`
}

func device(h *nodetest.Hub, id string) (online bool, models map[string]deviceModel) {
	h.T.Helper()
	var d struct {
		Online   bool `json:"online"`
		Reported struct {
			Models map[string]deviceModel `json:"models"`
		} `json:"reported"`
	}
	h.Call(http.MethodGet, "/api/v1/devices/"+id, nil, http.StatusOK, &d)
	return d.Online, d.Reported.Models
}
