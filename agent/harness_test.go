package agent_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/driftline/driftline/agent"
	"github.com/driftline/driftline/agent/config"
	"github.com/driftline/driftline/agent/devicedb"
	"github.com/driftline/driftline/hub/node"
	"github.com/driftline/driftline/internal/testhelp"
	"github.com/driftline/driftline/shared/artifact"
)

// testWriter sends log lines to t.Log, so a passing run is quiet.
type testWriter struct {
	t  testing.TB
	mu *sync.Mutex
	on *bool
}

func (w testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if *w.on {
		w.t.Log(strings.TrimSpace(string(p)))
	}
	return len(p), nil
}

// testLogger logs to t until the test ends (goroutines may log after).
func testLogger(t testing.TB, level slog.Level) *slog.Logger {
	mu, on := &sync.Mutex{}, true
	t.Cleanup(func() { mu.Lock(); on = false; mu.Unlock() })
	return slog.New(slog.NewTextHandler(testWriter{t, mu, &on}, &slog.HandlerOptions{Level: level}))
}

func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	testhelp.WaitFor(t, d, what, cond)
}

// hub is a one-node hub with its admin token.
type hub struct {
	t   testing.TB
	n   *node.Node
	tok string
	dir string
	// client calls the API (nil: http.DefaultClient; a TLS hub's test sets one trusting its CA).
	client *http.Client
}

func (h *hub) httpClient() *http.Client {
	if h.client != nil {
		return h.client
	}
	return http.DefaultClient
}

// startHub starts a hub node on free ports: the embedded broker, or the external brokers given.
func startHub(t testing.TB, brokers ...string) *hub {
	t.Helper()
	return startHubWith(t, nil, brokers...)
}

// startHubWith is startHub with edit applied to the node's config first (when not nil).
func startHubWith(t testing.TB, edit func(*node.Config), brokers ...string) *hub {
	t.Helper()
	dir := t.TempDir()
	cfg := node.Config{DataDir: dir, NodeID: "n1", HTTPAddr: "127.0.0.1:0", RaftAddr: "127.0.0.1:0",
		Logger: testLogger(t, slog.LevelWarn)}
	if edit != nil {
		edit(&cfg)
	}
	if len(brokers) > 0 {
		cfg.Brokers = brokers
	} else {
		cfg.MQTTAddr = "127.0.0.1:0"
	}
	n, err := node.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	h := &hub{t: t, n: n, dir: dir}
	waitFor(t, 20*time.Second, "admin token", func() bool {
		b, err := os.ReadFile(filepath.Join(dir, node.AdminTokenFile))
		h.tok = strings.TrimSpace(string(b))
		return err == nil && h.tok != ""
	})
	return h
}

// call sends a JSON request and decodes the answer into out, failing on another status.
func (h *hub) call(method, path string, body any, want int, out any) {
	h.t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, h.n.URL()+path, r)
	req.Header.Set("Authorization", "Bearer "+h.tok)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	h.do(req, want, out)
}

func (h *hub) do(req *http.Request, want int, out any) {
	h.t.Helper()
	res, err := h.httpClient().Do(req)
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

// pushModel registers a version of model from data (creating the model on the first push)
// and approves it.
func (h *hub) pushModel(model string, data []byte) (version int, digest string) {
	h.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, h.n.URL()+"/api/v1/models/"+model, nil)
	req.Header.Set("Authorization", "Bearer "+h.tok)
	if res, err := h.httpClient().Do(req); err == nil {
		res.Body.Close()
		if res.StatusCode == http.StatusNotFound {
			h.call(http.MethodPost, "/api/v1/models", map[string]string{"name": model}, http.StatusCreated, nil)
		}
	}
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	mw.WriteField("metadata", `{"format":"onnx"}`)
	fw, _ := mw.CreateFormFile("artifact", "model.bin")
	fw.Write(data)
	mw.Close()
	req, _ = http.NewRequest(http.MethodPost, h.n.URL()+"/api/v1/models/"+model+"/versions", &buf)
	req.Header.Set("Authorization", "Bearer "+h.tok)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	var out struct {
		Version int    `json:"version"`
		Digest  string `json:"digest"`
	}
	h.do(req, http.StatusCreated, &out)
	h.call(http.MethodPost, fmt.Sprintf("/api/v1/models/%s/versions/%d/approve", model, out.Version), map[string]string{"comment": "ok"}, http.StatusOK, nil)
	return out.Version, out.Digest
}

// enroll adds a device and returns its token.
func (h *hub) enroll(id string) string {
	h.t.Helper()
	var dev struct {
		Token string `json:"token"`
	}
	h.call(http.MethodPost, "/api/v1/devices", map[string]any{"id": id, "labels": map[string]string{"site": "test"}}, http.StatusCreated, &dev)
	return dev.Token
}

// assign pins model@version on device id.
func (h *hub) assign(id, model string, version int) {
	h.t.Helper()
	h.call(http.MethodPut, "/api/v1/devices/"+id+"/models/"+model, map[string]int{"version": version}, http.StatusOK, nil)
}

// keys returns the hub's public signing keys as the agent config lists them.
func (h *hub) keys() []string {
	h.t.Helper()
	var page struct {
		Items []struct {
			PublicKey string `json:"public_key"`
		} `json:"items"`
	}
	h.call(http.MethodGet, "/api/v1/keys", nil, http.StatusOK, &page)
	var out []string
	for _, k := range page.Items {
		out = append(out, k.PublicKey)
	}
	if len(out) == 0 {
		h.t.Fatal("hub has no signing key")
	}
	return out
}

// root returns the cluster's newest root of trust (root.json), as device add writes it.
func (h *hub) root() string {
	h.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, h.n.URL()+"/api/v1/keys/root", nil)
	req.Header.Set("Authorization", "Bearer "+h.tok)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK {
		h.t.Fatalf("GET /api/v1/keys/root: %d %s", res.StatusCode, b)
	}
	return string(b)
}

// deviceModel is what GET /api/v1/devices/{id} says about one model.
type deviceModel struct {
	Active    *int   `json:"active"`
	Previous  *int   `json:"previous"`
	State     string `json:"state"`
	LastError string `json:"last_error"`
}

func (h *hub) device(id string) (online bool, models map[string]deviceModel) {
	h.t.Helper()
	var d struct {
		Online   bool `json:"online"`
		Reported struct {
			Models map[string]deviceModel `json:"models"`
		} `json:"reported"`
	}
	h.call(http.MethodGet, "/api/v1/devices/"+id, nil, http.StatusOK, &d)
	return d.Online, d.Reported.Models
}

// agentConfig returns a config for device id with fast test timings.
func agentConfig(t testing.TB, id, token string, brokers, keys []string) config.Config {
	dir := t.TempDir()
	c := config.Default()
	c.DeviceID, c.Token, c.Brokers, c.TrustedKeys = id, token, brokers, keys
	c.StateDir, c.ModelDir, c.Metrics = filepath.Join(dir, "state"), filepath.Join(dir, "models"), config.MetricsOff
	c.Heartbeat = config.Duration(time.Second)
	c.Fetch.Timeout = config.Duration(2 * time.Second)
	c.Fetch.Stall = config.Duration(20 * time.Second)
	return c
}

// runningAgent is an agent run in this process on its own database.
type runningAgent struct {
	*agent.Agent
	reg    *prometheus.Registry
	cancel context.CancelFunc
	done   chan error
	db     *devicedb.DB
}

func startAgent(t testing.TB, cfg config.Config, opts agent.Options) *runningAgent {
	t.Helper()
	return startAgentHook(t, cfg, opts, nil)
}

// agentConfigT is config.Config, named for helpers in files that use "config" otherwise.
type agentConfigT = config.Config

// startAgentHook starts an agent, calling hook (if set) between New and Run.
func startAgentHook(t testing.TB, cfg config.Config, opts agent.Options, hook func(a *agent.Agent)) *runningAgent {
	t.Helper()
	db, err := devicedb.Open(cfg.StateDir)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	opts.Registerer, opts.Gatherer = reg, reg
	if opts.Logger == nil {
		opts.Logger = testLogger(t, slog.LevelInfo)
	}
	a, err := agent.New(cfg, db.Root(), opts)
	if err != nil {
		db.Close()
		t.Fatal(err)
	}
	if hook != nil {
		hook(a)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ra := &runningAgent{Agent: a, reg: reg, cancel: cancel, done: make(chan error, 1), db: db}
	go func() { ra.done <- a.Run(ctx) }()
	t.Cleanup(ra.stop)
	return ra
}

// stop ends the agent and closes its database (idempotent).
func (ra *runningAgent) stop() {
	if ra.cancel == nil {
		return
	}
	ra.cancel()
	<-ra.done
	ra.db.Close()
	ra.cancel = nil
}

// metric returns the value of the sample of name whose labels include labels (0 if none).
func metric(t testing.TB, g prometheus.Gatherer, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if hasLabels(m, labels) {
				switch {
				case m.Counter != nil:
					return m.Counter.GetValue()
				case m.Gauge != nil:
					return m.Gauge.GetValue()
				}
			}
		}
	}
	return 0
}

func hasLabels(m *dto.Metric, kv []string) bool {
	for i := 0; i+1 < len(kv); i += 2 {
		found := false
		for _, l := range m.GetLabel() {
			if l.GetName() == kv[i] && l.GetValue() == kv[i+1] {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// freePort returns a TCP port that was free a moment ago.
func freePort(t testing.TB) int {
	return testhelp.FreePort(t)
}

// testKey returns a fresh public key in config form (for agents that never see a manifest).
func testKey(t testing.TB) string {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return artifact.PublicKeyBase64(pub)
}

func sha256Sum(b []byte) [32]byte { return sha256.Sum256(b) }
