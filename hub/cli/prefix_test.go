package cli

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/driftline/driftline/agent"
	agentcli "github.com/driftline/driftline/agent/cli"
	"github.com/driftline/driftline/hub/api"
)

// TestTopicPrefix runs `hub serve` with DRIFTLINE_TOPIC_PREFIX set to a non-default prefix and
// a real agent enrolled with `device add --agent-config`: the config carries the hub's prefix
// (agents learn it there, as they learn the brokers), and a model pinned for the device reaches
// it and runs, which needs desired, fetch, chunk and reported to travel under that prefix both
// ways.
func TestTopicPrefix(t *testing.T) {
	const prefix = "plant7/driftline"
	dir := filepath.Join(t.TempDir(), "data")
	httpAddr := freeAddr(t)
	env := map[string]string{
		"DRIFTLINE_DATA":         dir,
		"DRIFTLINE_HTTP":         httpAddr,
		"DRIFTLINE_RAFT":         freeAddr(t),
		"DRIFTLINE_MQTT":         freeAddr(t),
		"DRIFTLINE_TOPIC_PREFIX": prefix,
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan result, 1)
	go func() { done <- runCLICtx(t, ctx, env, "hub", "serve", "--log-level", "warn") }()
	defer func() {
		cancel()
		select {
		case r := <-done:
			if r.code != 0 {
				t.Errorf("hub serve exited %d: %s", r.code, r.stderr)
			}
		case <-time.After(30 * time.Second):
			t.Error("hub serve did not stop")
		}
	}()
	client := map[string]string{"DRIFTLINE_HUB": "http://" + httpAddr, "DRIFTLINE_DATA": dir}
	waitFor(t, "hub answers", 30*time.Second, func() bool { return runCLI(t, client, "cluster", "status").code == 0 })
	ok := func(args ...string) string {
		t.Helper()
		r := runCLI(t, client, args...)
		if r.code != 0 {
			t.Fatalf("driftline %s: exit %d: %s", strings.Join(args, " "), r.code, r.stderr)
		}
		return r.stdout
	}
	var st api.ClusterStatus
	if err := json.Unmarshal([]byte(ok("cluster", "status", "-o", "json")), &st); err != nil || st.TopicPrefix != prefix {
		t.Fatalf("cluster status topic_prefix = %q (%v), want %q", st.TopicPrefix, err, prefix)
	}

	ok("model", "create", "m")
	ok("model", "push", "m", "--artifact", writeFile(t, t.TempDir(), "m.bin", []byte("model weights under a prefix")))
	ok("model", "approve", "m", "1")
	cfgPath := filepath.Join(t.TempDir(), "edge-1.yaml")
	ok("device", "add", "edge-1", "--agent-config", cfgPath)
	agentDir := t.TempDir()
	cfg, err := agentcli.LoadConfig(cfgPath, filepath.Join(agentDir, "state"), filepath.Join(agentDir, "models"), "127.0.0.1:0")
	if err != nil {
		t.Fatalf("the agent refuses the config the CLI wrote: %v", err)
	}
	if cfg.TopicPrefix != prefix {
		t.Fatalf("agent config topic_prefix = %q, want the hub's %q", cfg.TopicPrefix, prefix)
	}
	// The Mosquitto ACL for this hub is under the hub's prefix unless --prefix says otherwise.
	if acl := ok("broker", "acl"); !strings.Contains(acl, "topic write "+prefix+"/dev/edge-1/reported") || strings.Contains(acl, "dl/v1") {
		t.Fatalf("broker acl is not under the hub's prefix %q:\n%s", prefix, acl)
	}
	if acl := ok("broker", "acl", "--prefix", "other/p"); !strings.Contains(acl, "topic write other/p/dev/edge-1/reported") {
		t.Fatalf("broker acl --prefix other/p:\n%s", acl)
	}
	ok("device", "pin", "edge-1", "m", "1")

	actx, acancel := context.WithCancel(context.Background())
	adone := make(chan error, 1)
	go func() {
		adone <- agentcli.Run(actx, cfg, tLog{t}, agent.Options{})
	}()
	defer func() {
		acancel()
		select {
		case err := <-adone:
			if err != nil && err != context.Canceled {
				t.Errorf("agent: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("agent did not stop")
		}
	}()
	waitFor(t, "edge-1 runs m v1", 60*time.Second, func() bool {
		r := runCLI(t, client, "device", "show", "edge-1", "-o", "json")
		var d struct {
			Online   bool `json:"online"`
			Reported struct {
				Models map[string]struct {
					Active *int `json:"active"`
				} `json:"models"`
			} `json:"reported"`
		}
		if r.code != 0 || json.Unmarshal([]byte(r.stdout), &d) != nil {
			return false
		}
		a := d.Reported.Models["m"].Active
		return d.Online && a != nil && *a == 1
	})
}
