package systemtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/driftline/driftline/internal/freeport"
	"github.com/driftline/driftline/internal/hubproc"
	"github.com/driftline/driftline/internal/testhelp"
	"github.com/driftline/driftline/shared/enrol"
)

// TestTopicPrefix runs `driftline hub serve` with DRIFTLINE_TOPIC_PREFIX set to a non-default prefix and
// a real agent enrolled with `device add --agent-config`: the config carries the hub's prefix
// (agents learn it there, as they learn the brokers), and a model pinned for the device reaches
// it and runs, which needs desired, fetch, chunk and reported to travel under that prefix both
// ways.
func TestTopicPrefix(t *testing.T) {
	const prefix = "plant7/driftline"
	dir := filepath.Join(t.TempDir(), "data")
	httpAddr := freeport.Addr(t)
	hubEnv := []string{"DRIFTLINE_DATA=" + dir, "DRIFTLINE_HTTP=" + httpAddr, "DRIFTLINE_RAFT=" + freeport.Addr(t),
		"DRIFTLINE_MQTT=" + freeport.Addr(t), "DRIFTLINE_TOPIC_PREFIX=" + prefix}
	hubproc.StartT(t, "hub", hubEnv, binary, "hub", "serve", "--log-level", "warn")
	client := []string{"DRIFTLINE_HUB=http://" + httpAddr, "DRIFTLINE_DATA=" + dir}
	run := func(args ...string) (string, error) {
		cmd := exec.Command(binary, args...)
		cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir}, client...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		if err != nil {
			err = fmt.Errorf("driftline %s: %v: %s", strings.Join(args, " "), err, stderr.String())
		}
		return stdout.String(), err
	}
	testhelp.WaitFor(t, 30*time.Second, "hub answers", func() bool { _, err := run("cluster", "status"); return err == nil })
	ok := func(args ...string) string {
		t.Helper()
		out, err := run(args...)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	var st struct {
		TopicPrefix string `json:"topic_prefix"`
	}
	if err := json.Unmarshal([]byte(ok("cluster", "status", "-o", "json")), &st); err != nil || st.TopicPrefix != prefix {
		t.Fatalf("cluster status topic_prefix = %q (%v), want %q", st.TopicPrefix, err, prefix)
	}

	art := filepath.Join(t.TempDir(), "m.bin")
	if err := os.WriteFile(art, []byte("model weights under a prefix"), 0o600); err != nil {
		t.Fatal(err)
	}
	ok("model", "create", "m")
	ok("model", "push", "m", "--artifact", art)
	ok("model", "approve", "m", "1")
	cfgPath := filepath.Join(t.TempDir(), "edge-1.yaml")
	ok("device", "add", "edge-1", "--agent-config", cfgPath)
	enrolled, err := enrol.Read(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if enrolled.TopicPrefix != prefix {
		t.Fatalf("enrolment file topic_prefix = %q, want the hub's %q", enrolled.TopicPrefix, prefix)
	}
	// The Mosquitto ACL for this hub is under the hub's prefix unless --prefix says otherwise.
	if acl := ok("broker", "acl"); !strings.Contains(acl, "topic write "+prefix+"/dev/edge-1/reported") || strings.Contains(acl, "dl/v1") {
		t.Fatalf("broker acl is not under the hub's prefix %q:\n%s", prefix, acl)
	}
	if acl := ok("broker", "acl", "--prefix", "other/p"); !strings.Contains(acl, "topic write other/p/dev/edge-1/reported") {
		t.Fatalf("broker acl --prefix other/p:\n%s", acl)
	}
	ok("device", "pin", "edge-1", "m", "1")

	// The agent runs on the file as written (with its own state and model dirs).
	agentDir := t.TempDir()
	hubproc.StartT(t, "agent", nil, agentBinary, "run", "--config", cfgPath, "--state-dir", filepath.Join(agentDir, "state"),
		"--model-dir", filepath.Join(agentDir, "models"), "--metrics", "off")
	testhelp.WaitFor(t, 60*time.Second, "edge-1 runs m v1", func() bool {
		out, err := run("device", "show", "edge-1", "-o", "json")
		var d struct {
			Online   bool `json:"online"`
			Reported struct {
				Models map[string]struct {
					Active *int `json:"active"`
				} `json:"models"`
			} `json:"reported"`
		}
		if err != nil || json.Unmarshal([]byte(out), &d) != nil {
			return false
		}
		a := d.Reported.Models["m"].Active
		return d.Online && a != nil && *a == 1
	})
}
