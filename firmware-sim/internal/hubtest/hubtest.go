// Package hubtest starts a real one-node hub (embedded broker included) for firmware-sim's
// tests, and wraps the few API calls they make.
package hubtest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/driftline/driftline/hub/node"
)

// Hub is a running test hub and its admin token.
type Hub struct {
	*node.Node
	Admin string
	t     *testing.T
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// Logger logs warnings and errors through t.Log.
func Logger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// WaitFor polls cond every 20 ms until it holds, failing t after d.
func WaitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Start starts a one-node hub on free ports; it stops when the test ends.
func Start(t *testing.T) *Hub {
	t.Helper()
	return StartWith(t, nil)
}

// StartWith is Start with the node's config changed by mod (when not nil) before it starts.
func StartWith(t *testing.T, mod func(*node.Config)) *Hub {
	t.Helper()
	dir := t.TempDir()
	cfg := node.Config{
		DataDir: dir, NodeID: "n1", HTTPAddr: "127.0.0.1:0", RaftAddr: "127.0.0.1:0", MQTTAddr: "127.0.0.1:0",
		Logger: Logger(t),
	}
	if mod != nil {
		mod(&cfg)
	}
	n, err := node.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	var tok string
	WaitFor(t, 10*time.Second, "admin token", func() bool {
		b, err := os.ReadFile(filepath.Join(dir, node.AdminTokenFile))
		tok = strings.TrimSpace(string(b))
		return err == nil && tok != ""
	})
	return &Hub{Node: n, Admin: tok, t: t}
}

// Call sends a JSON request as admin, fails the test on a status other than want, and decodes
// the answer into out (when not nil).
func (h *Hub) Call(method, path string, body any, want int, out any) {
	h.t.Helper()
	var r io.Reader
	ct := ""
	if body != nil {
		b, _ := json.Marshal(body)
		r, ct = bytes.NewReader(b), "application/json"
	}
	h.do(method, path, r, ct, want, out)
}

func (h *Hub) do(method, path string, r io.Reader, ct string, want int, out any) {
	h.t.Helper()
	req, _ := http.NewRequest(method, h.URL()+path, r)
	req.Header.Set("Authorization", "Bearer "+h.Admin)
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		h.t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			h.t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
}

// Enroll creates a device and returns its token.
func (h *Hub) Enroll(id string) string {
	h.t.Helper()
	var out struct{ Token string }
	h.Call(http.MethodPost, "/api/v1/devices", map[string]any{"id": id, "labels": map[string]string{"site": "test"}}, http.StatusCreated, &out)
	return out.Token
}

// PushDataset creates dataset name and pushes a version from a contract (compact JSON: the
// hub serves agents the stored, compacted bytes) and a CSV sample; it returns the version.
func (h *Hub) PushDataset(name, contract, sampleCSV string) int {
	h.t.Helper()
	h.Call(http.MethodPost, "/api/v1/datasets", map[string]any{"name": name}, http.StatusCreated, nil)
	var cbuf bytes.Buffer
	if err := json.Compact(&cbuf, []byte(contract)); err != nil {
		h.t.Fatal(err)
	}
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	cw, _ := mw.CreateFormFile("contract", "contract.json")
	cw.Write(cbuf.Bytes())
	sw, _ := mw.CreateFormFile("sample", "sample.csv")
	sw.Write([]byte(sampleCSV))
	mw.Close()
	var dv struct{ Version int }
	h.do(http.MethodPost, "/api/v1/datasets/"+name+"/versions", &buf, mw.FormDataContentType(), http.StatusCreated, &dv)
	return dv.Version
}

// PushModel creates model name (if needed), registers artifact as a new version trained on
// dataset@dsVersion (none when dataset is empty), approves it and returns the version.
func (h *Hub) PushModel(name string, artifact []byte, dataset string, dsVersion int) int {
	h.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, h.URL()+"/api/v1/models/"+name, nil)
	req.Header.Set("Authorization", "Bearer "+h.Admin)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusNotFound {
			h.Call(http.MethodPost, "/api/v1/models", map[string]any{"name": name}, http.StatusCreated, nil)
		}
	}
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	meta, _ := mw.CreateFormField("metadata")
	trained := []map[string]any{}
	if dataset != "" {
		trained = append(trained, map[string]any{"dataset": dataset, "version": dsVersion})
	}
	mb, _ := json.Marshal(map[string]any{"trained_on": trained, "format": "test"})
	meta.Write(mb)
	fw, _ := mw.CreateFormFile("artifact", "model.bin")
	fw.Write(artifact)
	mw.Close()
	var mv struct{ Version int }
	h.do(http.MethodPost, "/api/v1/models/"+name+"/versions", &buf, mw.FormDataContentType(), http.StatusCreated, &mv)
	h.Call(http.MethodPost, "/api/v1/models/"+name+"/versions/"+itoa(mv.Version)+"/approve", map[string]any{"comment": "test"}, http.StatusOK, nil)
	return mv.Version
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}
