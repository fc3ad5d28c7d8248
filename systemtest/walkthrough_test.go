package systemtest

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/driftline/driftline/hub/broker/mosquittotest"
	"github.com/driftline/driftline/internal/freeport"
	"github.com/driftline/driftline/internal/hubproc"
	"github.com/driftline/driftline/internal/testhelp"
)

// TestOperationsWalkthrough runs the step-by-step block of docs/operations.md ("From nothing to
// three TLS nodes, an external Mosquitto and two agents") as it is written there, with bash, the
// binaries TestMain built on PATH and free ports: the cluster CA and node certificates with
// openssl, Mosquitto from deploy/mosquitto with files rendered by the CLI, three nodes over
// mutual TLS, two enrolled agents, and a model both of them run. So the operator's procedure
// cannot rot without this test failing. Everything the block starts runs in one process group,
// stopped at the end.
func TestOperationsWalkthrough(t *testing.T) {
	if os.Getenv("DRIFTLINE_INTEGRATION") != "1" {
		t.Skip("set DRIFTLINE_INTEGRATION=1 to run the operator walkthrough of docs/operations.md")
	}
	mosq := mosquittotest.Binary(t, "the operator walkthrough of docs/operations.md")
	for _, tool := range []string{"bash", "openssl", "curl", "mosquitto_passwd", "timeout"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("!!! SKIP: the operator walkthrough needs %s on PATH !!!", tool)
		}
	}
	src, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile(filepath.Join(src, "docs", "operations.md"))
	if err != nil {
		t.Fatal(err)
	}
	script := walkthroughBlock(t, string(doc))

	dir := t.TempDir()
	// Started as root, Mosquitto reads its files as user mosquitto: let it reach the directory.
	for d := dir; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	env := append(os.Environ(),
		"PATH="+strings.Join([]string{filepath.Dir(binary), filepath.Dir(agentBinary), filepath.Dir(mosq), os.Getenv("PATH")}, string(os.PathListSeparator)),
		"SRC="+src,
		"DRIFTLINE_TOKEN=", "DRIFTLINE_HUB=", "SSL_CERT_FILE=",
	)
	for _, name := range []string{"API1", "API2", "API3", "RAFT1", "RAFT2", "RAFT3", "MQTT_DEV", "MQTT_HUB"} {
		env = append(env, name+"="+strconv.Itoa(freeport.Port(t)))
	}

	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	var out hubproc.Output
	cmd := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-c", script)
	cmd.Dir, cmd.Env, cmd.Stdout, cmd.Stderr = dir, env, &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pgid := cmd.Process.Pid
	t.Cleanup(func() { stopGroup(t, pgid) })
	err = cmd.Wait()
	if err != nil {
		t.Errorf("the walkthrough failed: %v\n%s\n%s", err, out.String(), walkthroughLogs(dir))
		return
	}
	// The block's last command lists the devices as hub3 sees them: both run demo@1.
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	var running int
	for _, l := range lines[max(0, len(lines)-3):] {
		if f := strings.Fields(l); len(f) >= 4 && strings.HasPrefix(f[0], "edge-") && f[1] == "true" && f[3] == "demo@1" {
			running++
		}
	}
	if running != 2 {
		t.Errorf("hub3 does not list both agents running demo@1:\n%s", out.String())
	}
}

// walkthroughBlock returns the shell code between the walkthrough markers of docs/operations.md.
func walkthroughBlock(t *testing.T, doc string) string {
	t.Helper()
	_, rest, ok := strings.Cut(doc, "<!-- walkthrough:begin -->")
	block, _, ok2 := strings.Cut(rest, "<!-- walkthrough:end -->")
	if !ok || !ok2 {
		t.Fatal("docs/operations.md has no <!-- walkthrough:begin/end --> block")
	}
	block = strings.TrimSpace(block)
	block = strings.TrimPrefix(block, "```sh")
	block = strings.TrimSuffix(block, "```")
	if strings.TrimSpace(block) == "" {
		t.Fatal("the walkthrough block of docs/operations.md is empty")
	}
	return block
}

// stopGroup stops every process of the walkthrough's group (hubs, agents, Mosquitto): SIGTERM,
// then SIGKILL for what is left after 15 s.
func stopGroup(t *testing.T, pgid int) {
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	gone := func() bool { return errors.Is(syscall.Kill(-pgid, 0), syscall.ESRCH) }
	deadline := time.Now().Add(15 * time.Second)
	for !gone() && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if !gone() {
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		testhelp.WaitFor(t, 10*time.Second, "the walkthrough's processes exit after SIGKILL", gone)
	}
}

// walkthroughLogs returns the logs the block's processes wrote, for a failed run.
func walkthroughLogs(dir string) string {
	var b bytes.Buffer
	logs, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	for _, l := range logs {
		data, _ := os.ReadFile(l)
		if len(data) > 4000 {
			data = data[len(data)-4000:]
		}
		b.WriteString("--- " + filepath.Base(l) + " (tail)\n" + string(data) + "\n")
	}
	return b.String()
}
