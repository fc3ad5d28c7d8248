package cli

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// fakeRollouts stands in for the hub's rollout controller, which is not built yet: it records
// what the CLI sends and answers status polls with the given states in turn.
type fakeRollouts struct {
	mu     sync.Mutex
	states []string
	polls  int
	bodies map[string]string
}

func (f *fakeRollouts) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, _ := io.ReadAll(r.Body)
	f.bodies[r.Method+" "+r.URL.Path] = string(b)
	w.Header().Set("Content-Type", "application/json")
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/api/v1/rollouts":
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, `{"id":"r1","state":"running"}`)
	case r.Method == http.MethodGet && r.URL.Path == "/api/v1/rollouts":
		_, _ = io.WriteString(w, `{"items":[{"id":"r1","model":"m","version":2,"state":"running","wave":1,"devices":{"active":3}}],"next_cursor":null}`)
	case r.Method == http.MethodGet && r.URL.Path == "/api/v1/rollouts/r1":
		st := f.states[min(f.polls, len(f.states)-1)]
		f.polls++
		_ = json.NewEncoder(w).Encode(map[string]any{"id": "r1", "model": "m", "version": 2, "state": st, "wave": f.polls,
			"reason": "", "devices": map[string]int{"active": f.polls, "pending": 4 - f.polls},
			"gates": map[string]any{"max_failure_rate": map[string]float64{"value": 0, "threshold": 0.1}}})
	case r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, "/api/v1/rollouts/r1/"):
		_, _ = io.WriteString(w, `{"id":"r1","state":"`+strings.TrimPrefix(r.URL.Path, "/api/v1/rollouts/r1/")+`d"}`)
	default:
		http.NotFound(w, r)
	}
}

func TestRolloutCommands(t *testing.T) {
	f := &fakeRollouts{states: []string{"running", "running", "completed"}, bodies: map[string]string{}}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	env := map[string]string{"DRIFTLINE_HUB": srv.URL, "DRIFTLINE_TOKEN": "x"}

	r := runCLI(t, env, "rollout", "create", "--model", "m", "--version", "2", "--selector", "site=berlin",
		"--waves", "1,10,50,100", "--bake", "10m", "--max-failure-rate", "0.1", "--on-gate-failure", "rollback")
	if r.code != 0 || !strings.Contains(r.stdout, "rollout r1: running") {
		t.Fatalf("create: exit %d: %s", r.code, r.stdout)
	}
	var sent map[string]any
	if err := json.Unmarshal([]byte(f.bodies["POST /api/v1/rollouts"]), &sent); err != nil {
		t.Fatal(err)
	}
	gates, _ := sent["gates"].(map[string]any)
	if sent["model"] != "m" || sent["version"] != 2.0 || sent["selector"] != "site=berlin" || sent["bake_seconds"] != 600.0 ||
		sent["on_gate_failure"] != "rollback" || len(sent["waves"].([]any)) != 4 || gates["max_failure_rate"] != 0.1 || len(gates) != 1 {
		t.Errorf("create sent %v", sent)
	}

	r = runCLI(t, env, "rollout", "status", "r1", "--watch", "--interval", "1ms")
	if r.code != 0 || !strings.Contains(r.stdout, "completed") || !strings.Contains(r.stdout, "max_failure_rate") || f.polls != 3 {
		t.Errorf("status --watch: exit %d after %d polls:\n%s", r.code, f.polls, r.stdout)
	}
	if strings.Count(r.stderr, "running") != 2 {
		t.Errorf("status --watch should report each poll on stderr:\n%s", r.stderr)
	}
	if r := runCLI(t, env, "rollout", "status"); r.code != 0 || !strings.Contains(r.stdout, "m@2") {
		t.Errorf("status (list): exit %d: %s", r.code, r.stdout)
	}
	for _, act := range []string{"pause", "resume", "abort", "rollback"} {
		if r := runCLI(t, env, "rollout", act, "r1"); r.code != 0 || !strings.Contains(r.stdout, act+"d") {
			t.Errorf("%s: exit %d: %s", act, r.code, r.stdout)
		}
	}
	for _, args := range [][]string{
		{"rollout", "create", "--model", "m"},
		{"rollout", "create", "--model", "m", "--version", "1", "--waves", "1,x"},
		{"rollout", "create", "--model", "m", "--version", "1", "--on-gate-failure", "panic"},
		{"rollout", "status", "--watch"},
	} {
		if r := runCLI(t, env, args...); r.code != ExitUsage {
			t.Errorf("%v: exit %d, want %d", args, r.code, ExitUsage)
		}
	}
}
