package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/driftline/driftline/hub/node"
	"github.com/driftline/driftline/hub/node/nodetest"
)

// testHub is one real hub node (Raft, badger, HTTP API) for a test, with its admin token.
type testHub struct {
	n     *node.Node
	url   string
	admin string
	dir   string // the node's data dir
}

// startHub starts a one-node hub without MQTT (nodetest.Start) for the CLI to run against.
func startHub(t testing.TB) *testHub {
	t.Helper()
	nh := nodetest.Start(t, nodetest.NoMQTT())
	return &testHub{n: nh.Node, url: nh.URL(), admin: nh.Token, dir: nh.Dir}
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
