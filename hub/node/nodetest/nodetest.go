// Package nodetest runs real hub nodes (hub/node: Raft, badger, the HTTP API, the embedded MQTT
// broker) in the test's process, in the manner of hashicorp/raft's testing.go: Start gives one
// node with its admin token and JSON helpers, Cluster gives n nodes joined into one Raft cluster
// with Leader, WaitForNewLeader, Kill, Restart and EnsureSame. Ports are free ones, data dirs are
// temp dirs, and everything is stopped when the test ends. Every helper fails the test
// (t.Fatal) rather than returning an error. Test code only.
//
// Tests that run `driftline hub serve` processes use internal/hubproc instead; tests that span
// the agent and the hub live in the top-level systemtest/ folder.
package nodetest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/driftline/driftline/hub/node"
	"github.com/driftline/driftline/internal/freeport"
	"github.com/driftline/driftline/internal/testhelp"
)

// WaitTimeout bounds the harness's own waits (admin token, leader, replication).
const WaitTimeout = 30 * time.Second

// Option changes a node's configuration before it starts.
type Option func(*node.Config)

// NoMQTT starts the node without its embedded broker.
func NoMQTT() Option { return func(c *node.Config) { c.MQTTAddr = "" } }

// Brokers makes the node use external MQTT brokers instead of its embedded one.
func Brokers(urls ...string) Option {
	return func(c *node.Config) { c.Brokers, c.MQTTAddr = urls, "" }
}

// Hub is one running node, the admin token of its cluster and the client that calls it.
type Hub struct {
	*node.Node
	// T is the test the helpers report to; With returns a copy reporting to another.
	T testing.TB
	// Dir is the node's data dir.
	Dir string
	// Token is the cluster's admin token.
	Token string
	// Client calls the API: a client with a 60 s timeout; a TLS hub's test replaces it with one
	// trusting its CA.
	Client *http.Client
	// cfg is what the node was started with, for Restart.
	cfg node.Config
}

// Config returns the configuration a node started by this package gets before opts: a temp data
// dir, id n1, the API, Raft and the embedded broker on free loopback ports, and the log on t at
// warning level.
func Config(t testing.TB) node.Config {
	return node.Config{DataDir: t.TempDir(), NodeID: "n1", HTTPAddr: "127.0.0.1:0", RaftAddr: freeport.Addr(t),
		MQTTAddr: "127.0.0.1:0", Logger: testhelp.Logger(t)}
}

// Start starts a one-node hub (the embedded broker included unless an option says otherwise),
// waits until it has written its admin token and created its root of trust, and stops it when
// the test ends.
func Start(t testing.TB, opts ...Option) *Hub {
	t.Helper()
	cfg := Config(t)
	for _, o := range opts {
		o(&cfg)
	}
	h := start(t, cfg)
	h.Token = ReadToken(t, cfg.DataDir)
	h.WaitTrust()
	return h
}

// start starts a node with cfg and registers its Close.
func start(t testing.TB, cfg node.Config) *Hub {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), WaitTimeout)
	defer cancel()
	n, err := node.Start(ctx, cfg)
	if err != nil {
		t.Fatalf("start node %s: %v", cfg.NodeID, err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Logf("close node %s: %v", cfg.NodeID, err)
		}
	})
	// A restart binds the addresses this start was given.
	cfg.HTTPAddr = n.HTTPAddr()
	if a := n.MQTTAddr(); a != "" {
		cfg.MQTTAddr = a
	}
	return &Hub{Node: n, T: t, Dir: cfg.DataDir, Client: &http.Client{Timeout: 60 * time.Second}, cfg: cfg}
}

// ReadToken waits until the node with data dir dir has written the admin token, and returns it.
func ReadToken(t testing.TB, dir string) string {
	t.Helper()
	var tok string
	testhelp.WaitFor(t, WaitTimeout, "the admin token in "+dir, func() bool {
		b, err := os.ReadFile(filepath.Join(dir, node.AdminTokenFile))
		tok = strings.TrimSpace(string(b))
		return err == nil && tok != ""
	})
	return tok
}

// WaitTrust waits until the cluster's root of trust exists in the node's state.
func (h *Hub) WaitTrust() {
	h.T.Helper()
	testhelp.WaitFor(h.T, WaitTimeout, "the root of trust", func() bool {
		_, err := h.Reader().Trust()
		return err == nil
	})
}

// With returns a copy of h whose helpers report to t (a fuzz function must not fail its
// *testing.F; a subtest reports to itself).
func (h *Hub) With(t testing.TB) *Hub {
	c := *h
	c.T = t
	return &c
}

// Request sends method path with body (JSON-encoded; nil sends none) and the admin token, and
// returns the status and body whatever the status. It fails the test only when the request
// cannot be sent.
func (h *Hub) Request(method, path string, body any) (int, []byte) {
	h.T.Helper()
	req := h.NewRequest(method, path, body)
	res, err := h.Client.Do(req)
	if err != nil {
		h.T.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, b
}

// NewRequest builds a request to the node's API carrying the admin token, with body encoded as
// JSON (nil: no body).
func (h *Hub) NewRequest(method, path string, body any) *http.Request {
	h.T.Helper()
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			h.T.Fatalf("encode %T: %v", body, err)
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, h.URL()+path, r)
	if err != nil {
		h.T.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+h.Token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return req
}

// Call sends a JSON request and decodes the answer into out (when not nil); it fails the test
// unless the status is want, and returns the body.
func (h *Hub) Call(method, path string, body any, want int, out any) []byte {
	h.T.Helper()
	return h.Do(h.NewRequest(method, path, body), want, out)
}

// Do sends req (with the admin token unless it carries an Authorization header) and decodes the
// answer into out (when not nil); it fails the test unless the status is want, and returns the
// body.
func (h *Hub) Do(req *http.Request, want int, out any) []byte {
	h.T.Helper()
	if req.Header.Get("Authorization") == "" {
		req.Header.Set("Authorization", "Bearer "+h.Token)
	}
	res, err := h.Client.Do(req)
	if err != nil {
		h.T.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != want {
		h.T.Fatalf("%s %s: got %d want %d: %s", req.Method, req.URL.Path, res.StatusCode, want, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			h.T.Fatalf("decode %s: %v", b, err)
		}
	}
	return b
}

// Multipart posts fields and one file (fileField, fileName, file) as multipart/form-data to
// path, and decodes the answer into out as Do does.
func (h *Hub) Multipart(path string, fields map[string]string, fileField, fileName string, file []byte, want int, out any) []byte {
	h.T.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for k, v := range fields {
		mw.WriteField(k, v)
	}
	fw, _ := mw.CreateFormFile(fileField, fileName)
	fw.Write(file)
	mw.Close()
	req, err := http.NewRequest(http.MethodPost, h.URL()+path, &buf)
	if err != nil {
		h.T.Fatal(err)
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	return h.Do(req, want, out)
}

// Enroll adds a device with labels and returns its token.
func (h *Hub) Enroll(id string, labels map[string]string) string {
	h.T.Helper()
	var dev struct {
		Token string `json:"token"`
	}
	h.Call(http.MethodPost, "/api/v1/devices", map[string]any{"id": id, "labels": labels}, http.StatusCreated, &dev)
	return dev.Token
}

// Keys returns the hub's public signing keys as an agent's config lists them, waiting until
// there is one.
func (h *Hub) Keys() []string {
	h.T.Helper()
	var out []string
	testhelp.WaitFor(h.T, WaitTimeout, "the hub's signing key", func() bool {
		var page struct {
			Items []struct {
				PublicKey string `json:"public_key"`
			} `json:"items"`
		}
		h.Call(http.MethodGet, "/api/v1/keys", nil, http.StatusOK, &page)
		out = out[:0]
		for _, k := range page.Items {
			out = append(out, k.PublicKey)
		}
		return len(out) > 0
	})
	return out
}

// Root returns the cluster's newest root of trust (root.json), as `device add` writes it.
func (h *Hub) Root() string {
	h.T.Helper()
	return string(h.Call(http.MethodGet, "/api/v1/keys/root", nil, http.StatusOK, nil))
}

// PushDataset creates dataset name when it does not exist and pushes a version from contract
// (JSON, compacted as the hub stores it) and a CSV sample, from which the hub computes the
// reference profile. It returns the version.
func (h *Hub) PushDataset(name, contract, sampleCSV string) int {
	h.T.Helper()
	if code, b := h.Request(http.MethodPost, "/api/v1/datasets", map[string]string{"name": name}); code != http.StatusCreated && code != http.StatusConflict {
		h.T.Fatalf("create dataset %s: %d %s", name, code, b)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, []byte(contract)); err != nil {
		h.T.Fatalf("contract of %s: %v", name, err)
	}
	var out struct {
		Version int `json:"version"`
	}
	h.Multipart("/api/v1/datasets/"+name+"/versions", map[string]string{"contract": compact.String()}, "sample", "sample.csv", []byte(sampleCSV), http.StatusCreated, &out)
	return out.Version
}

// PushModel creates model name when it does not exist, registers artifact as a new version
// with metadata (JSON; `{"format":"onnx"}` when empty), approves it when approve is set, and
// returns the version and the artifact's digest.
func (h *Hub) PushModel(name string, artifact []byte, metadata string, approve bool) (version int, digest string) {
	h.T.Helper()
	if code, b := h.Request(http.MethodPost, "/api/v1/models", map[string]string{"name": name}); code != http.StatusCreated && code != http.StatusConflict {
		h.T.Fatalf("create model %s: %d %s", name, code, b)
	}
	if metadata == "" {
		metadata = `{"format":"onnx"}`
	}
	var out struct {
		Version int    `json:"version"`
		Digest  string `json:"digest"`
	}
	h.Multipart("/api/v1/models/"+name+"/versions", map[string]string{"metadata": metadata}, "artifact", "model.bin", artifact, http.StatusCreated, &out)
	if approve {
		h.Call(http.MethodPost, fmt.Sprintf("/api/v1/models/%s/versions/%d/approve", name, out.Version), map[string]string{"comment": "ok"}, http.StatusOK, nil)
	}
	return out.Version, out.Digest
}
