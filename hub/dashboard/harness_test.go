package dashboard_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/driftline/driftline/hub/dashboard"
	"github.com/driftline/driftline/hub/node"
	"github.com/driftline/driftline/hub/node/nodetest"
)

// testHub is a real one-node hub (hub/node.Start, embedded broker) and the base URL that serves
// both its API and the dashboard.
type testHub struct {
	t     *testing.T
	node  *node.Node
	token string
	// URL serves the dashboard at / and the API under /api/v1. It is the node itself once
	// hub/node registers the dashboard; until then a front server adds the dashboard's routes
	// and proxies everything else to the node.
	URL string
	// profiles publish the profiles of the devices runAgent started (publishProfiles).
	profiles []func()
}

// startHub starts a one-node hub (nodetest.Start) and serves the dashboard in front of it when
// the node does not.
func startHub(t *testing.T) *testHub {
	t.Helper()
	nh := nodetest.Start(t)
	n := nh.Node
	h := &testHub{t: t, node: n, token: nh.Token, URL: n.URL()}
	if !servesDashboard(n.URL()) {
		t.Log("hub/node does not serve the dashboard yet: using a front server that proxies the API")
		target, _ := url.Parse(n.URL())
		proxy := httputil.NewSingleHostReverseProxy(target)
		e := echo.New()
		dashboard.Register(e)
		e.Any("/*", echo.WrapHandler(proxy))
		front := httptest.NewServer(e)
		t.Cleanup(front.Close)
		h.URL = front.URL
	}
	return h
}

func servesDashboard(base string) bool {
	res, err := http.Get(base + "/")
	if err != nil {
		return false
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode == http.StatusOK && bytes.Contains(b, []byte(`name="driftline-dashboard"`))
}

// call sends a JSON request with the admin token and decodes the answer into out, failing on
// any status but want.
func (h *testHub) call(method, path string, body any, want int, out any) {
	h.t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, h.URL+path, r)
	req.Header.Set("Authorization", "Bearer "+h.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	h.do(req, want, out)
}

func (h *testHub) do(req *http.Request, want int, out any) {
	h.t.Helper()
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != want {
		h.t.Fatalf("%s %s: got %d want %d: %s", req.Method, req.URL.Path, res.StatusCode, want, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			h.t.Fatalf("decode %s: %v", b, err)
		}
	}
}

// multipart posts form fields and files (name -> [filename, content]) to path.
func (h *testHub) multipart(path string, fields map[string]string, files map[string][2]string, want int, out any) {
	h.t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for k, v := range fields {
		mw.WriteField(k, v)
	}
	for k, f := range files {
		fw, _ := mw.CreateFormFile(k, f[0])
		fw.Write([]byte(f[1]))
	}
	mw.Close()
	req, _ := http.NewRequest(http.MethodPost, h.URL+path, &buf)
	req.Header.Set("Authorization", "Bearer "+h.token)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	h.do(req, want, out)
}

// fleet is what seed created.
type fleet struct {
	Devices   []string
	Tokens    map[string]string // device id -> device token
	Model     string
	Version   int
	RolloutID string
}

// seed fills the hub with what every page shows: devices with labels, a dataset version, a
// model version trained on it and approved, and a rollout of it in two waves with a long bake.
func (h *testHub) seed() fleet {
	h.t.Helper()
	f := fleet{Model: "temp-model", Tokens: map[string]string{}}
	for i, site := range []string{"berlin", "berlin", "paris", "paris", "oslo"} {
		id := fmt.Sprintf("edge-%d", i+1)
		var dev struct {
			Token string `json:"token"`
		}
		h.call(http.MethodPost, "/api/v1/devices", map[string]any{"id": id, "labels": map[string]string{"site": site, "tier": "edge"}}, http.StatusCreated, &dev)
		f.Devices = append(f.Devices, id)
		f.Tokens[id] = dev.Token
	}
	h.call(http.MethodPost, "/api/v1/datasets", map[string]string{"name": "temps", "description": "machine temperatures"}, http.StatusCreated, nil)
	contract := `{"fields":[{"name":"ts","type":"integer"},{"name":"value","type":"number","constraints":{"required":true}}]}`
	sample := "ts,value\n1,20.5\n2,21.0\n3,20.8\n4,22.1\n5,21.7\n"
	h.multipart("/api/v1/datasets/temps/versions", nil, map[string][2]string{"contract": {"contract.json", contract}, "sample": {"sample.csv", sample}}, http.StatusCreated, nil)
	h.call(http.MethodPost, "/api/v1/models", map[string]string{"name": f.Model, "description": "anomaly model"}, http.StatusCreated, nil)
	var mv struct {
		Version int `json:"version"`
	}
	meta := `{"format":"onnx","trained_on":[{"dataset":"temps","version":1}],"metrics":{"f1":0.91},"code_ref":"git:abc123"}`
	h.multipart("/api/v1/models/"+f.Model+"/versions", map[string]string{"metadata": meta}, map[string][2]string{"artifact": {"model.onnx", strings.Repeat("weights", 5000)}}, http.StatusCreated, &mv)
	f.Version = mv.Version
	h.call(http.MethodPost, fmt.Sprintf("/api/v1/models/%s/versions/%d/approve", f.Model, f.Version), map[string]string{"comment": "passes offline eval"}, http.StatusOK, nil)
	var ro struct {
		ID    string `json:"id"`
		State string `json:"state"`
	}
	h.call(http.MethodPost, "/api/v1/rollouts", map[string]any{"model": f.Model, "version": f.Version, // The rollout takes the paris and oslo devices only: the devices the tests make report
		// drift and invalid rows (edge-1, edge-2 in berlin) must not trip its gates, whichever
		// devices its first wave takes; the test pauses the rollout itself.
		"selector": "site in (paris,oslo)", "waves": []int{50, 100}, "bake_seconds": 3600,
		"gates": map[string]float64{"max_failure_rate": 0.5, "max_drift_share": 0.9, "max_invalid_rate": 0.5}}, http.StatusCreated, &ro)
	f.RolloutID = ro.ID
	return f
}
