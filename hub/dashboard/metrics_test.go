package dashboard_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/driftline/driftline/internal/testhelp"
)

// integration reports whether DRIFTLINE_INTEGRATION=1 asks for every integration test to run:
// a missing tool is then a failure, not a skip.
func integration() bool { return os.Getenv("DRIFTLINE_INTEGRATION") == "1" }

// needTool returns the path of a tool, skipping the test loudly when it is missing (failing it
// under DRIFTLINE_INTEGRATION=1).
func needTool(t *testing.T, names ...string) string {
	t.Helper()
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	msg := "none of " + strings.Join(names, ", ") + " is installed (make ci installs it)"
	if integration() {
		t.Fatal(msg)
	}
	t.Skip("SKIPPED: " + msg)
	return ""
}

// TestHubMetricsPromtool scrapes a real hub's /metrics after some API and MQTT traffic and has
// promtool check that it is valid Prometheus text with no lint problems.
func TestHubMetricsPromtool(t *testing.T) {
	promtool := needTool(t, "promtool")
	h := startHub(t)
	h.seed()
	h.call(http.MethodGet, "/api/v1/devices", nil, http.StatusOK, nil)
	h.call(http.MethodGet, "/api/v1/devices/nope", nil, http.StatusNotFound, nil)
	var body []byte
	testhelp.WaitFor(t, 10*time.Second, "hub metrics", func() bool {
		res, err := http.Get(h.URL + "/metrics")
		if err != nil {
			return false
		}
		defer res.Body.Close()
		body, _ = io.ReadAll(res.Body)
		// The controller has driven the seeded rollout once its first wave started.
		return res.StatusCode == http.StatusOK && bytes.Contains(body, []byte("driftline_hub_rollout_decisions_total{"))
	})
	for _, name := range []string{
		"driftline_hub_api_requests_total", "driftline_hub_api_request_seconds_bucket", "driftline_hub_raft_applied_index",
		"driftline_hub_raft_state", "driftline_hub_mqtt_messages_total", "driftline_hub_desired_published_total", "go_goroutines",
	} {
		if !bytes.Contains(body, []byte("\n"+name)) {
			t.Errorf("/metrics lacks %s", name)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(body)
	out, err := cmd.CombinedOutput()
	t.Logf("promtool check metrics on %d bytes: %s", len(body), out)
	if err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
}
