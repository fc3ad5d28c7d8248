package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/driftline/driftline/hub/node"
	"github.com/driftline/driftline/internal/testhelp"
)

// testHub is one real hub node (Raft, badger, HTTP API) for a test, with its admin token.
type testHub struct {
	n     *node.Node
	url   string
	admin string
	dir   string // the node's data dir
}

// freeAddr returns a 127.0.0.1 address nothing listens on right now: Raft must advertise a
// concrete port, so "127.0.0.1:0" does not do for it.
func freeAddr(t testing.TB) string {
	return testhelp.FreeAddr(t)
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	testhelp.WaitFor(t, timeout, what, cond)
}

// tLog sends log lines to t.Log so a passing run stays quiet.
type tLog struct{ t testing.TB }

func (w tLog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// startHub starts a one-node hub without MQTT in a temp dir and waits for its admin token and
// signing key.
func startHub(t testing.TB) *testHub {
	t.Helper()
	dir := t.TempDir()
	n, err := node.Start(context.Background(), node.Config{
		DataDir: dir, HTTPAddr: "127.0.0.1:0", RaftAddr: freeAddr(t),
		Logger: slog.New(slog.NewTextHandler(tLog{t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		t.Fatalf("start node: %v", err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Logf("close node: %v", err)
		}
	})
	h := &testHub{n: n, url: n.URL(), dir: dir}
	waitFor(t, "admin token file", 30*time.Second, func() bool {
		b, err := os.ReadFile(filepath.Join(dir, node.AdminTokenFile))
		h.admin = strings.TrimSpace(string(b))
		return err == nil && h.admin != ""
	})
	waitFor(t, "root of trust created", 30*time.Second, func() bool {
		_, err := n.Reader().Trust()
		return err == nil
	})
	return h
}

// result is what one CLI invocation did.
type result struct {
	code           int
	stdout, stderr string
}

// runCLI runs the CLI in-process with an empty environment plus env.
func runCLI(t testing.TB, env map[string]string, args ...string) result {
	t.Helper()
	return runCLICtx(t, context.Background(), env, args...)
}

func runCLICtx(t testing.TB, ctx context.Context, env map[string]string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	a := &app{ctx: ctx, stdout: &out, stderr: &errb, getenv: func(k string) (string, bool) {
		v, ok := env[k]
		return v, ok
	}}
	code := a.run(args)
	t.Logf("driftline %s -> %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out.String(), errb.String())
	return result{code: code, stdout: out.String(), stderr: errb.String()}
}

// run runs the CLI against h with the admin token.
func (h *testHub) run(t testing.TB, args ...string) result {
	t.Helper()
	return runCLI(t, map[string]string{"DRIFTLINE_HUB": h.url, "DRIFTLINE_TOKEN": h.admin}, args...)
}

// ok runs the CLI against h and fails the test unless it exits 0.
func (h *testHub) ok(t testing.TB, args ...string) string {
	t.Helper()
	r := h.run(t, args...)
	if r.code != 0 {
		t.Fatalf("driftline %s: exit %d: %s", strings.Join(args, " "), r.code, r.stderr)
	}
	return r.stdout
}

// okJSON runs the CLI with -o json, expects exit 0 and decodes stdout into v.
func (h *testHub) okJSON(t testing.TB, v any, args ...string) {
	t.Helper()
	out := h.ok(t, append(args, "-o", "json")...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("driftline %s -o json: output is not JSON: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// writeFile writes a test input file and returns its path.
func writeFile(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
