package systemtest

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/driftline/driftline/internal/freeport"
	"github.com/driftline/driftline/internal/hubproc"
)

// qemuTargets are the edge architectures smoke-tested under qemu-user-static: GOARCH, GOARM and
// the qemu binary that runs them.
var qemuTargets = []struct{ name, goarch, goarm, qemu string }{
	{"arm64", "arm64", "", "qemu-aarch64-static"},
	{"armv7", "arm", "7", "qemu-arm-static"},
}

// TestAgentUnderQemu cross-compiles the agent for arm64 and armv7 (static, as `make release`
// does), runs `check` on a sample under qemu-user-static, then runs each against a real hub until
// the model it was given is active. Skipped loudly without qemu-user-static (a failure under
// DRIFTLINE_INTEGRATION=1, where make ci-deps installs it).
func TestAgentUnderQemu(t *testing.T) {
	for _, q := range qemuTargets {
		if _, err := exec.LookPath(q.qemu); err != nil {
			if os.Getenv("DRIFTLINE_INTEGRATION") == "1" {
				t.Fatalf("%s is not installed (make ci-deps installs qemu-user-static)", q.qemu)
			}
			t.Skipf("SKIPPED: %s is not installed (apt-get install qemu-user-static, or make ci-deps)", q.qemu)
		}
	}
	if testing.Short() {
		t.Skip("SKIPPED in -short: cross-compiles the agent twice")
	}
	bin := t.TempDir()
	agents := map[string]string{}
	for _, q := range qemuTargets {
		out := filepath.Join(bin, "driftline-agent-"+q.name)
		build := exec.Command("go", "build", "-trimpath", "-o", out, "github.com/driftline/driftline/agent/cmd/driftline-agent")
		build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+q.goarch, "GOARM="+q.goarm)
		if b, err := build.CombinedOutput(); err != nil {
			t.Fatalf("build agent %s: %v\n%s", q.name, err, b)
		}
		agents[q.name] = out
	}

	// check on a sample.
	data := "../agent/pipeline/testdata/check/"
	for _, q := range qemuTargets {
		cmd := exec.Command(q.qemu, agents[q.name], "check", "--contract", data+"contract.json", "--reference", data+"ref.csv", data+"clean.csv")
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), `"rows": 120`) {
			t.Fatalf("%s check: %v\n%s", q.name, err, out)
		}
	}

	// A hub with its embedded broker, a model, and one device per architecture.
	c := emptyCluster(t)
	h := c.newHub("hub1")
	h.MQTT = freeport.Addr(t)
	h.Start(t, binary)
	c.hubs = []*hub{h}
	c.token = hubproc.ReadToken(t, h.Dir)
	if code, b := c.do(h, http.MethodPost, "/api/v1/models", map[string]string{"name": "edge"}); code != http.StatusCreated {
		t.Fatalf("model: %d %s", code, b)
	}
	if code, b := c.uploadTiny(h, "edge"); code != http.StatusCreated {
		t.Fatalf("upload: %d %s", code, b)
	}
	if code, b := c.do(h, http.MethodPost, "/api/v1/models/edge/versions/1/approve", nil); code != http.StatusOK {
		t.Fatalf("approve: %d %s", code, b)
	}
	for _, q := range qemuTargets {
		dev := "edge-" + q.name
		cfg := filepath.Join(bin, dev+".yaml")
		if code, out, errOut := cli(t, "device", "add", dev, "--agent-config", cfg, "--hub", "http://"+h.HTTP, "--token", c.token); code != 0 {
			t.Fatalf("device add: %d %s %s", code, out, errOut)
		}
		if code, b := c.do(h, http.MethodPut, "/api/v1/devices/"+dev+"/models/edge", map[string]int{"version": 1}); code != http.StatusOK {
			t.Fatalf("desired: %d %s", code, b)
		}
		var log bytes.Buffer
		agent := exec.Command(q.qemu, agents[q.name], "run", "--config", cfg, "--state-dir", filepath.Join(bin, dev, "state"),
			"--model-dir", filepath.Join(bin, dev, "models"), "--metrics", "off")
		agent.Stdout, agent.Stderr = &log, &log
		if err := agent.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { agent.Wait(); close(done) }()
		stopAgent := func() {
			agent.Process.Signal(os.Interrupt)
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				agent.Process.Kill()
				<-done
			}
		}
		start := time.Now()
		ok := false
		deadline := time.Now().Add(90 * time.Second)
		for time.Now().Before(deadline) && !ok {
			code, b := c.do(h, http.MethodGet, "/api/v1/devices/"+dev, nil)
			var d struct {
				Reported struct {
					Models map[string]struct {
						Active *int `json:"active"`
					} `json:"models"`
				} `json:"reported"`
			}
			if code == http.StatusOK && json.Unmarshal(b, &d) == nil {
				if m, has := d.Reported.Models["edge"]; has && m.Active != nil && *m.Active == 1 {
					ok = true
					break
				}
			}
			select {
			case <-done:
				t.Fatalf("%s agent exited:\n%s", q.name, log.String())
			case <-time.After(250 * time.Millisecond):
			}
		}
		stopAgent()
		if !ok {
			t.Fatalf("%s agent did not activate the model in 90 s:\n%s", q.name, tail(log.String(), 4000))
		}
		t.Logf("%s agent under %s: model active after %s", q.name, q.qemu, time.Since(start).Round(100*time.Millisecond))
	}
}
