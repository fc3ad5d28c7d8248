package api_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"strings"
	"testing"

	"github.com/driftline/driftline/hub/api"
	"github.com/driftline/driftline/hub/node"
	"github.com/driftline/driftline/hub/node/nodetest"
)

// testHub is one real hub node (Raft, badger, HTTP API) started for a test, with its admin
// token and helpers to call it.
type testHub struct {
	t      testing.TB
	n      *node.Node
	url    string
	admin  string
	client *http.Client
}

// startHub starts a one-node hub without MQTT (nodetest.Start) with mod, when not nil, applied
// to its config, and returns it with the API-testing helpers below.
func startHub(t testing.TB, mod func(*node.Config)) *testHub {
	t.Helper()
	opts := []nodetest.Option{nodetest.NoMQTT()}
	if mod != nil {
		opts = append(opts, mod)
	}
	nh := nodetest.Start(t, opts...)
	return &testHub{t: t, n: nh.Node, url: nh.URL(), admin: nh.Token, client: nh.Client}
}

// with returns a copy of h that reports to t (a fuzz function must not fail its *testing.F).
func (h *testHub) with(t testing.TB) *testHub {
	c := *h
	c.t = t
	return &c
}

// response is a finished HTTP exchange.
type response struct {
	code   int
	header http.Header
	body   []byte
}

// decode unmarshals the body into v, failing the test on error.
func (r response) decode(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

// problem decodes the body as a problem document.
func (r response) problem(t testing.TB) api.Problem {
	t.Helper()
	var p api.Problem
	r.decode(t, &p)
	return p
}

// raw sends a request with the given body bytes and content type.
func (h *testHub) raw(method, path, token, contentType string, body io.Reader) response {
	h.t.Helper()
	req, err := http.NewRequest(method, h.url+path, body)
	if err != nil {
		h.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	res, err := h.client.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		h.t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return response{code: res.StatusCode, header: res.Header, body: b}
}

// do sends body as JSON (a string or []byte is sent as is; nil sends no body).
func (h *testHub) do(method, path, token string, body any) response {
	h.t.Helper()
	if body == nil {
		return h.raw(method, path, token, "", nil)
	}
	var b []byte
	switch v := body.(type) {
	case string:
		b = []byte(v)
	case []byte:
		b = v
	default:
		var err error
		if b, err = json.Marshal(v); err != nil {
			h.t.Fatal(err)
		}
	}
	return h.raw(method, path, token, "application/json", bytes.NewReader(b))
}

// must sends a request and fails unless the answer has the wanted status; it decodes the
// answer into out when out is not nil.
func (h *testHub) must(want int, method, path, token string, body, out any) response {
	h.t.Helper()
	r := h.do(method, path, token, body)
	if r.code != want {
		h.t.Fatalf("%s %s: got %d, want %d: %s", method, path, r.code, want, r.body)
	}
	if out != nil {
		r.decode(h.t, out)
	}
	return r
}

// token creates an API token with a role and returns its secret.
func (h *testHub) token(name, role string) string {
	h.t.Helper()
	var tc api.TokenCreated
	h.must(http.StatusCreated, "POST", "/api/v1/tokens", h.admin, api.TokenRequest{Name: name, Role: role}, &tc)
	return tc.Token
}

// joinToken creates a join token (an hour).
func (h *testHub) joinToken() string {
	h.t.Helper()
	var tc api.TokenCreated
	h.must(http.StatusCreated, "POST", "/api/v1/cluster/join-tokens", h.admin, api.JoinTokenRequest{}, &tc)
	return tc.Token
}

// part is one part of a multipart body.
type part struct {
	name, filename, contentType string
	data                        io.Reader
}

// multipartBody streams parts through a pipe, so a big artifact is never held twice.
func multipartBody(parts []part) (io.Reader, string) {
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	go func() {
		for _, p := range parts {
			hdr := textproto.MIMEHeader{}
			disp := fmt.Sprintf(`form-data; name=%q`, p.name)
			if p.filename != "" {
				disp += fmt.Sprintf(`; filename=%q`, p.filename)
			}
			hdr.Set("Content-Disposition", disp)
			if p.contentType != "" {
				hdr.Set("Content-Type", p.contentType)
			}
			w, err := mw.CreatePart(hdr)
			if err != nil {
				pw.CloseWithError(err)
				return
			}
			if _, err := io.Copy(w, p.data); err != nil {
				pw.CloseWithError(err)
				return
			}
		}
		pw.CloseWithError(mw.Close())
	}()
	return pr, mw.FormDataContentType()
}

// upload sends a multipart request.
func (h *testHub) upload(path, token string, parts ...part) response {
	h.t.Helper()
	body, ct := multipartBody(parts)
	return h.raw("POST", path, token, ct, body)
}

const testContract = `{"fields":[{"name":"temp","type":"number"},{"name":"site","type":"string"}]}`

// pushDataset creates (when needed) a dataset and pushes one version, returning its number.
func (h *testHub) pushDataset(name string, parents string) int {
	h.t.Helper()
	r := h.do("POST", "/api/v1/datasets", h.admin, api.CreateRequest{Name: name})
	if r.code != http.StatusCreated && r.code != http.StatusConflict {
		h.t.Fatalf("create dataset %s: %d %s", name, r.code, r.body)
	}
	parts := []part{
		{name: "contract", data: strings.NewReader(testContract)},
		{name: "sample", filename: "sample.csv", contentType: "text/csv", data: strings.NewReader("temp,site\n21.5,berlin\n22.0,paris\n")},
		{name: "source_uri", data: strings.NewReader("s3://bucket/" + name + ".csv")},
	}
	if parents != "" {
		parts = append(parts, part{name: "parents", data: strings.NewReader(parents)})
	}
	r = h.upload("/api/v1/datasets/"+name+"/versions", h.admin, parts...)
	if r.code != http.StatusCreated {
		h.t.Fatalf("push dataset %s: %d %s", name, r.code, r.body)
	}
	var out struct {
		Version int `json:"version"`
	}
	r.decode(h.t, &out)
	return out.Version
}

// modelVersionOut is the part of a model version answer the tests read.
type modelVersionOut struct {
	Model        string              `json:"model"`
	Version      int                 `json:"version"`
	Digest       string              `json:"digest"`
	Size         int64               `json:"size"`
	Status       string              `json:"status"`
	TrainedOn    []map[string]any    `json:"trained_on"`
	Signatures   []map[string]string `json:"signatures"`
	Approvals    []map[string]any    `json:"approvals"`
	ChunkCount   int                 `json:"chunk_count"`
	ChunksStored int                 `json:"chunks_stored"`
	ChunksReused int                 `json:"chunks_reused"`
	CreatedBy    string              `json:"created_by"`
}

// pushModel creates (when needed) a model and pushes one version of artifact with metadata,
// as token.
func (h *testHub) pushModel(name, token string, artifact []byte, metadata string) modelVersionOut {
	h.t.Helper()
	r := h.do("POST", "/api/v1/models", h.admin, api.CreateRequest{Name: name})
	if r.code != http.StatusCreated && r.code != http.StatusConflict {
		h.t.Fatalf("create model %s: %d %s", name, r.code, r.body)
	}
	parts := []part{}
	if metadata != "" {
		parts = append(parts, part{name: "metadata", contentType: "application/json", data: strings.NewReader(metadata)})
	}
	parts = append(parts, part{name: "artifact", filename: "model.onnx", contentType: "application/octet-stream", data: bytes.NewReader(artifact)})
	r = h.upload("/api/v1/models/"+name+"/versions", token, parts...)
	if r.code != http.StatusCreated {
		h.t.Fatalf("push model %s: %d %s", name, r.code, r.body)
	}
	var out modelVersionOut
	r.decode(h.t, &out)
	return out
}
