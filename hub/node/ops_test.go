package node

import (
	"bytes"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/driftline/driftline/hub/api"
)

// TestFleetAndSigningMetrics: device and rollout gauges come from the state; an approval that
// cannot be signed is counted.
func TestFleetAndSigningMetrics(t *testing.T) {
	n, tok := testNode(t)
	for _, id := range []string{"d1", "d2", "d3"} {
		call(t, n, tok, http.MethodPost, "/api/v1/devices", map[string]string{"id": id}, http.StatusCreated, nil)
	}
	want := `
# HELP driftline_hub_devices Registered devices by connection state (online, offline).
# TYPE driftline_hub_devices gauge
driftline_hub_devices{state="offline"} 3
driftline_hub_devices{state="online"} 0
# HELP driftline_hub_rollouts_paused_by_gate Paused rollouts with a failed gate (the controller paused them; a pause by hand has no failed gate).
# TYPE driftline_hub_rollouts_paused_by_gate gauge
driftline_hub_rollouts_paused_by_gate 0
`
	if err := testutil.GatherAndCompare(n.registry, strings.NewReader(want), metricDevices, metricRolloutsGated); err != nil {
		t.Fatal(err)
	}

	// The same state served by an API without a signing key: the approval fails and is counted.
	call(t, n, tok, http.MethodPost, "/api/v1/models", map[string]string{"name": "m"}, http.StatusCreated, nil)
	reg := prometheus.NewRegistry()
	keyless := api.New(api.Config{Store: storeAdapter{n.store}, Reader: n.Reader(), Registerer: reg, Gatherer: reg})
	srv := httptest.NewServer(keyless.Handler())
	defer srv.Close()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	fw, _ := mw.CreateFormFile("artifact", "model.bin")
	fw.Write([]byte("weights"))
	mw.Close()
	up, _ := http.NewRequest(http.MethodPost, n.URL()+"/api/v1/models/m/versions", &buf)
	up.Header.Set("Authorization", "Bearer "+tok)
	up.Header.Set("Content-Type", mw.FormDataContentType())
	doReq(t, up, http.StatusCreated, nil)
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/api/v1/models/m/versions/1/approve", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	doReq(t, req, http.StatusServiceUnavailable, nil)
	wantSign := `
# HELP driftline_hub_signing_failures_total Approvals this node could not sign, by reason (no_key).
# TYPE driftline_hub_signing_failures_total counter
driftline_hub_signing_failures_total{reason="no_key"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(wantSign), api.MetricSigningFailures); err != nil {
		t.Fatal(err)
	}
}
