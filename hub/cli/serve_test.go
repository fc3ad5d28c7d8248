package cli

import (
	"context"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/driftline/driftline/hub/node"
	"github.com/driftline/driftline/internal/freeport"
	"github.com/driftline/driftline/internal/gcpace"
	"github.com/driftline/driftline/internal/testhelp"
	"github.com/spf13/pflag"
)

func TestServeRunsAndStopsCleanly(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	httpAddr := freeport.Addr(t)
	env := map[string]string{
		"DRIFTLINE_DATA":      dir,
		"DRIFTLINE_HTTP":      "256.0.0.1:1", // the flag below must win
		"DRIFTLINE_RAFT":      freeport.Addr(t),
		"DRIFTLINE_MQTT":      "",
		"DRIFTLINE_NODE_ID":   "n-env",
		"DRIFTLINE_FOUR_EYES": "true",
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan result, 1)
	go func() { done <- runCLICtx(t, ctx, env, "hub", "serve", "--http", httpAddr, "--log-level", "warn") }()
	tokPath := filepath.Join(dir, "admin.token")
	var tok string
	testhelp.WaitFor(t, 30*time.Second, "admin token", func() bool {
		b, err := os.ReadFile(tokPath)
		tok = strings.TrimSpace(string(b))
		return err == nil && tok != ""
	})
	client := map[string]string{"DRIFTLINE_HUB": "http://" + httpAddr, "DRIFTLINE_DATA": dir}
	r := runCLI(t, client, "cluster", "status")
	if r.code != 0 || !strings.Contains(r.stdout, "n-env") || !strings.Contains(r.stdout, "leader") {
		t.Fatalf("cluster status: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// --four-eyes came from DRIFTLINE_FOUR_EYES: the admin may not approve its own push.
	runCLI(t, client, "model", "create", "m")
	runCLI(t, client, "model", "push", "m", "--artifact", writeFile(t, t.TempDir(), "a", []byte("x")))
	if r := runCLI(t, client, "model", "approve", "m", "1"); r.code != ExitRefused {
		t.Errorf("approval of one's own version under four-eyes: exit %d", r.code)
	}
	cancel()
	select {
	case r := <-done:
		if r.code != 0 {
			t.Fatalf("hub serve exited %d: %s", r.code, r.stderr)
		}
		if !strings.Contains(r.stdout, "admin token: "+tokPath) {
			t.Errorf("hub serve did not say where the admin token is:\n%s", r.stdout)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("hub serve did not stop")
	}
}

func TestServeConfigErrors(t *testing.T) {
	cases := []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"tls cert without key", nil, []string{"--tls-cert", "c.pem"}, "go together"},
		{"bad broker scheme", nil, []string{"--broker", "http://x:1883"}, "--broker"},
		{"bad advertise-mqtt", map[string]string{"DRIFTLINE_ADVERTISE_MQTT": "nohost"}, nil, "--advertise-mqtt"},
		{"bad join URL", nil, []string{"--join", "10.0.0.1:8080"}, "--join"},
		{"bad env bool", map[string]string{"DRIFTLINE_FOUR_EYES": "maybe"}, nil, "DRIFTLINE_FOUR_EYES"},
		{"bad log level", nil, []string{"--log-level", "loud"}, "--log-level"},
		{"empty data", map[string]string{"DRIFTLINE_DATA": ""}, nil, "--data"},
		{"wildcard topic prefix", nil, []string{"--topic-prefix", "plant/+/dl"}, "--topic-prefix"},
		{"empty topic prefix level", map[string]string{"DRIFTLINE_TOPIC_PREFIX": "plant//dl"}, nil, "--topic-prefix"},
		{"raft commit timeout too long", nil, []string{"--raft-commit-timeout", "1s"}, "--raft-commit-timeout"},
		{"raft commit timeout zero", map[string]string{"DRIFTLINE_RAFT_COMMIT_TIMEOUT": "0s"}, nil, "--raft-commit-timeout"},
		{"gc interval too short", nil, []string{"--gc-interval", "100ms"}, "--gc-interval"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := runCLI(t, tc.env, append([]string{"hub", "serve"}, tc.args...)...)
			if r.code != ExitUsage || !strings.Contains(r.stderr, tc.want) {
				t.Errorf("exit %d, stderr %q; want %d naming %q", r.code, r.stderr, ExitUsage, tc.want)
			}
		})
	}
}

func TestServeEnvNames(t *testing.T) {
	want := map[string]string{
		"data": "DRIFTLINE_DATA", "node-id": "DRIFTLINE_NODE_ID", "http": "DRIFTLINE_HTTP", "raft": "DRIFTLINE_RAFT",
		"mqtt": "DRIFTLINE_MQTT", "broker": "DRIFTLINE_BROKER", "join": "DRIFTLINE_JOIN", "tls-cert": "DRIFTLINE_TLS_CERT",
		"tls-key": "DRIFTLINE_TLS_KEY", "advertise-mqtt": "DRIFTLINE_ADVERTISE_MQTT", "signing-key": "DRIFTLINE_SIGNING_KEY",
		"four-eyes": "DRIFTLINE_FOUR_EYES", "join-token": "DRIFTLINE_TOKEN", "topic-prefix": "DRIFTLINE_TOPIC_PREFIX",
	}
	a := &app{}
	fs := a.serveCmd().Flags()
	for flag, env := range want {
		if fs.Lookup(flag) == nil {
			t.Errorf("hub serve has no --%s", flag)
			continue
		}
		if got := envName(flag); got != env {
			t.Errorf("--%s: env %s, want %s", flag, got, env)
		}
	}
	defaults := map[string]string{"data": "./driftline-data", "http": ":8080", "raft": "127.0.0.1:7000", "mqtt": ":1883", "topic-prefix": "dl/v1"}
	for flag, def := range defaults {
		if got := fs.Lookup(flag).DefValue; got != def {
			t.Errorf("--%s default %q, want %q", flag, got, def)
		}
	}
}

func TestApplyEnvFlagWins(t *testing.T) {
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	fs.String("http", ":8080", "")
	fs.String("raft", "127.0.0.1:7000", "")
	fs.String("mqtt", ":1883", "")
	if err := fs.Parse([]string{"--http", ":9000"}); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"DRIFTLINE_HTTP": ":1", "DRIFTLINE_RAFT": "10.0.0.1:7000", "DRIFTLINE_MQTT": ""}
	a := &app{getenv: func(k string) (string, bool) { v, ok := env[k]; return v, ok }}
	if err := a.applyEnv(fs); err != nil {
		t.Fatal(err)
	}
	for flag, want := range map[string]string{"http": ":9000", "raft": "10.0.0.1:7000", "mqtt": ""} {
		if got, _ := fs.GetString(flag); got != want {
			t.Errorf("--%s = %q, want %q", flag, got, want)
		}
	}
}

// TestServeGCInterval: --gc-interval (or DRIFTLINE_GC_INTERVAL) sets the longest the hub goes
// without a collection; unset, gcpace.DefaultInterval (0: the runtime's pacing only).
func TestServeGCInterval(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want time.Duration
	}{
		{nil, nil, gcpace.DefaultInterval},
		{[]string{"--gc-interval", "2s"}, nil, 2 * time.Second},
		{nil, map[string]string{"DRIFTLINE_GC_INTERVAL": "5s"}, gcpace.MemoryInterval},
	} {
		o, _ := parseServe(t, tc.args, tc.env)
		if o.gcInterval != tc.want {
			t.Errorf("%v %v: gc interval %s, want %s", tc.args, tc.env, o.gcInterval, tc.want)
		}
	}
}

// TestServeRaftCommitTimeout: --raft-commit-timeout (or its variable) reaches the node's config;
// unset, the node's default applies.
func TestServeRaftCommitTimeout(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want time.Duration
	}{
		{nil, nil, node.DefaultRaftCommitTimeout},
		{[]string{"--raft-commit-timeout", "20ms"}, nil, 20 * time.Millisecond},
		{nil, map[string]string{"DRIFTLINE_RAFT_COMMIT_TIMEOUT": "50ms"}, 50 * time.Millisecond},
	} {
		_, cfg := parseServe(t, tc.args, tc.env)
		if cfg.RaftCommitTimeout != tc.want {
			t.Errorf("%v %v: RaftCommitTimeout %s, want %s", tc.args, tc.env, cfg.RaftCommitTimeout, tc.want)
		}
	}
}

// TestServeGCPercent: hub serve sets the collector's target to hubGCPercent unless GOGC is set.
func TestServeGCPercent(t *testing.T) {
	prev := debug.SetGCPercent(100)
	defer debug.SetGCPercent(prev)
	a := &app{getenv: func(string) (string, bool) { return "", false }}
	if pct, set := a.setGCPercent(); !set || pct != hubGCPercent {
		t.Fatalf("no GOGC: %d, %v; want %d, true", pct, set, hubGCPercent)
	}
	if got := debug.SetGCPercent(100); got != hubGCPercent {
		t.Fatalf("the runtime's target is %d, want %d", got, hubGCPercent)
	}
	a.getenv = func(k string) (string, bool) { return "200", k == "GOGC" }
	if pct, set := a.setGCPercent(); set || pct != 200 {
		t.Fatalf("GOGC=200: %d, %v; want 200, false", pct, set)
	}
	if got := debug.SetGCPercent(100); got != 100 {
		t.Fatalf("GOGC=200 in the environment: the hub changed the runtime's target to %d", got)
	}
}

// parseServe parses serve's flags args with the environment env, as the command does, and
// returns the options and the node's config they make (a temporary --data).
func parseServe(t *testing.T, args []string, env map[string]string) (serveOptions, node.Config) {
	t.Helper()
	a := &app{getenv: func(k string) (string, bool) { v, ok := env[k]; return v, ok }}
	var o serveOptions
	cmd := a.serveCommand(&o)
	if err := cmd.Flags().Parse(args); err != nil {
		t.Fatal(err)
	}
	if err := a.applyEnv(cmd.Flags()); err != nil {
		t.Fatal(err)
	}
	o.data = t.TempDir()
	cfg, _, err := o.config()
	if err != nil {
		t.Fatal(err)
	}
	return o, cfg
}
