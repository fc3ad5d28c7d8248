package cli

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/driftline/driftline/internal/freeport"
)

// TestClusterStatusWait: `cluster status --wait` started before the hub (as a script does after
// `hub serve &`) answers once the hub is up and has written its admin token; without --wait the
// same call fails at once, and with a short --wait it gives up naming the cause.
func TestClusterStatusWait(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	httpAddr := freeport.Addr(t)
	client := map[string]string{"DRIFTLINE_HUB": "http://" + httpAddr, "DRIFTLINE_DATA": dir}
	if r := runCLI(t, client, "cluster", "status"); r.code != ExitUnavailable {
		t.Fatalf("no hub, no --wait: exit %d, want %d", r.code, ExitUnavailable)
	}
	if r := runCLI(t, client, "cluster", "status", "--wait", "300ms"); r.code != ExitUnavailable || !strings.Contains(r.stderr, "refused") {
		t.Fatalf("no hub, --wait 300ms: exit %d, stderr %q", r.code, r.stderr)
	}
	waited := make(chan result, 1)
	go func() { waited <- runCLI(t, client, "cluster", "status", "--wait", "60s") }()

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan result, 1)
	env := map[string]string{"DRIFTLINE_DATA": dir, "DRIFTLINE_HTTP": httpAddr, "DRIFTLINE_RAFT": freeport.Addr(t), "DRIFTLINE_MQTT": ""}
	go func() { done <- runCLICtx(t, ctx, env, "hub", "serve", "--log-level", "warn") }()
	defer func() {
		cancel()
		<-done
	}()
	select {
	case r := <-waited:
		if r.code != 0 || !strings.Contains(r.stdout, "leader") {
			t.Errorf("cluster status --wait: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
	case <-time.After(90 * time.Second):
		t.Fatal("cluster status --wait 60s did not return")
	}
}
