package agent_test

import (
	"bufio"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/driftline/driftline/agent"
	"github.com/driftline/driftline/agent/agenttest"
	"github.com/driftline/driftline/agent/config"
	"github.com/driftline/driftline/hub/node/nodetest"
	"github.com/driftline/driftline/internal/freeport"
	"github.com/driftline/driftline/internal/hubproc"
	"github.com/driftline/driftline/internal/testhelp"
)

// child is a driftline-agent process (this test binary in child mode).
type child struct {
	cmd    *exec.Cmd
	out    *hubproc.Output
	exited chan error
}

// writeConfig writes cfg as the YAML file the agent reads.
func writeConfig(t testing.TB, cfg config.Config) string {
	t.Helper()
	b, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "agent.yaml")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// startChild runs the agent process with the config file; killAfter > 0 makes it SIGKILL
// itself after that many fetched chunks.
func startChild(t testing.TB, cfgPath string, killAfter int, env ...string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "run", "--config", cfgPath)
	cmd.Env = append(os.Environ(), "DRIFTLINE_AGENT_CHILD=1", "DRIFTLINE_AGENT_KILL_AFTER_CHUNKS="+strconv.Itoa(killAfter))
	cmd.Env = append(cmd.Env, env...)
	c := &child{cmd: cmd, out: &hubproc.Output{}, exited: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = c.out, c.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { c.exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-c.exited
		if t.Failed() {
			t.Logf("agent process output:\n%s", c.out.String())
		}
	})
	return c
}

// stop sends SIGTERM and waits for a clean exit.
func (c *child) stop(t testing.TB) {
	t.Helper()
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-c.exited:
		c.exited <- err
		if err != nil {
			t.Fatalf("agent exited with %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("agent did not stop on SIGTERM")
	}
}

// scrape reads the numeric samples of a Prometheus text page (labels kept in the key).
func scrape(addr string) (map[string]float64, error) {
	res, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[line[:i]] = v
		}
	}
	return out, sc.Err()
}

// TestCrashDuringPull kills the agent process (SIGKILL) in the middle of pulling v2 while v1
// runs. Throughout, MODELDIR/NAME/current/model is whole v1 or whole v2. After a restart the
// pull completes without fetching again any chunk verified before the kill.
func TestCrashDuringPull(t *testing.T) {
	h := nodetest.Start(t)
	tok := enroll(h, "dev-crash")
	v1data, v2data := agenttest.RandomBytes(4, 4<<20), agenttest.RandomBytes(5, 6<<20)
	v1, d1 := h.PushModel("m", v1data, "", true)
	v2, d2 := h.PushModel("m", v2data, "", true)
	cfg := agenttest.Config(t, "dev-crash", tok, []string{h.MQTTURL()}, h.Keys())
	cfg.Fetch.Requests, cfg.Fetch.Digests = 2, 4 // small window: the kill lands mid-pull
	metricsAddr := freeport.Addr(t)
	cfg.Metrics = metricsAddr
	path := writeConfig(t, cfg)

	// The invariant, checked while everything below happens.
	var checks, bad atomic.Int64
	var badMsg atomic.Value
	stopCheck := make(chan struct{})
	checkDone := make(chan struct{})
	go func() {
		defer close(checkDone)
		f := agenttest.ModelFile(cfg.ModelDir, "m")
		for {
			select {
			case <-stopCheck:
				return
			default:
			}
			b, err := os.ReadFile(f)
			if errors.Is(err, os.ErrNotExist) {
				time.Sleep(2 * time.Millisecond)
				continue
			}
			if err != nil {
				continue // the link moved between resolving and reading: read again
			}
			if d := fmt.Sprintf("sha256:%x", sha256.Sum256(b)); d != d1 && d != d2 {
				bad.Add(1)
				badMsg.Store(fmt.Sprintf("current/model has %d bytes hashing to %s", len(b), d))
			}
			checks.Add(1)
		}
	}()
	defer func() {
		close(stopCheck)
		<-checkDone
		if bad.Load() > 0 {
			t.Fatalf("%d reads of current saw a partial or unverified model: %v", bad.Load(), badMsg.Load())
		}
		t.Logf("current read and verified %d times", checks.Load())
	}()

	c1 := startChild(t, path, 0)
	assign(h, "dev-crash", "m", v1)
	waitActive(t, h, "dev-crash", "m", v1, "active")
	c1.stop(t)

	const killAfter = 30
	c2 := startChild(t, path, killAfter)
	assign(h, "dev-crash", "m", v2)
	select {
	case err := <-c2.exited:
		c2.exited <- err // for the cleanup
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("agent exited with %v, want SIGKILL at chunk %d", err, killAfter)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("agent was not killed mid-pull")
	}
	if got := agenttest.FileDigest(t, agenttest.ModelFile(cfg.ModelDir, "m")); got != d1 {
		t.Fatalf("after the kill current is %s, want v1 %s", got, d1)
	}

	c3 := startChild(t, path, 0)
	waitActive(t, h, "dev-crash", "m", v2, "active")
	if got := agenttest.FileDigest(t, agenttest.ModelFile(cfg.ModelDir, "m")); got != d2 {
		t.Fatalf("current %s, want v2 %s", got, d2)
	}
	var ms map[string]float64
	testhelp.WaitFor(t, 10*time.Second, "agent metrics", func() bool {
		var err error
		ms, err = scrape(metricsAddr)
		return err == nil && ms[agent.MetricChunksReused] > 0
	})
	fetched, reused := ms[agent.MetricFetchedChunks], ms[agent.MetricChunksReused]
	t.Logf("after restart: %v chunks fetched, %v reused (killed after %d)", fetched, reused, killAfter)
	if reused < killAfter {
		t.Fatalf("restart reused %v chunks, want at least the %d verified before the kill", reused, killAfter)
	}
	if fetched+reused > float64(len(v2data)/(16<<10)) || fetched == 0 {
		t.Fatalf("restart fetched %v and reused %v chunks: implausible", fetched, reused)
	}
	c3.stop(t)
}

// waitKilled waits until the child died of SIGKILL.
func (c *child) waitKilled(t testing.TB, what string) {
	t.Helper()
	select {
	case err := <-c.exited:
		c.exited <- err // for the cleanup
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("agent exited with %v, want SIGKILL at %s", err, what)
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("agent was not killed at %s", what)
	}
}

// TestFailpointKills kills the agent process with SIGKILL at each named step of pulling and
// activating v2 over a running v1, one run per step (agent.Options.Failpoint). After each kill
// MODELDIR holds one whole version as current (old or new) and a valid previous; after a
// restart the pinned version ends active, or, when its health check fails and the kill landed
// in the rollback, v1 stays current and v2 is reported failed.
func TestFailpointKills(t *testing.T) {
	if os.Getenv("DRIFTLINE_INTEGRATION") != "1" {
		t.Skip("one agent kill per failpoint (~10 s each): runs with DRIFTLINE_INTEGRATION=1")
	}
	steps := []struct {
		step      string
		unhealthy bool // v2's health check fails
		armed     bool // kill at the first occurrence after v2 is assigned
	}{
		{step: "manifest"}, {step: "partial"}, {step: "staged"}, {step: "journaled"}, {step: "previous-set"},
		{step: "switched"}, {step: "checking"}, {step: "rollback", unhealthy: true}, {step: "reported", armed: true},
	}
	for _, tc := range steps {
		t.Run(tc.step, func(t *testing.T) {
			h := nodetest.Start(t)
			tok := enroll(h, "dev-fp")
			v1data := agenttest.RandomBytes(21, 512<<10)
			v1, d1 := h.PushModel("m", v1data, "", true)
			v2, d2 := h.PushModel("m", agenttest.Mutate(v1data, 0.3, 2), "", true)
			cfg := agenttest.Config(t, "dev-fp", tok, []string{h.MQTTURL()}, h.Keys())
			if tc.unhealthy {
				cfg.HealthCheck.Command = []string{"sh", "-c", `test "$DRIFTLINE_MODEL_VERSION" != "2"`}
			}
			path := writeConfig(t, cfg)
			c1 := startChild(t, path, 0)
			assign(h, "dev-fp", "m", v1)
			waitActive(t, h, "dev-fp", "m", v1, "active")
			c1.stop(t)

			env := []string{"DRIFTLINE_AGENT_FAILPOINT=" + tc.step}
			armed := filepath.Join(t.TempDir(), "armed")
			if tc.armed {
				env = append(env, "DRIFTLINE_AGENT_FAILPOINT_ARMED="+armed)
			}
			c2 := startChild(t, path, 0, env...)
			if tc.armed {
				testhelp.WaitFor(t, 20*time.Second, "agent back online", func() bool { on, _ := device(h, "dev-fp"); return on })
				if err := os.WriteFile(armed, nil, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			assign(h, "dev-fp", "m", v2)
			c2.waitKilled(t, tc.step)

			cur := agenttest.FileDigest(t, agenttest.ModelFile(cfg.ModelDir, "m"))
			if cur != d1 && cur != d2 {
				t.Fatalf("after the kill at %s current is %s: neither v1 nor v2", tc.step, cur)
			}
			prev := filepath.Join(cfg.ModelDir, "m", "previous", "model")
			if _, err := os.Stat(prev); err == nil {
				if p := agenttest.FileDigest(t, prev); p != d1 && p != d2 {
					t.Fatalf("after the kill at %s previous is %s", tc.step, p)
				}
			}
			t.Logf("killed at %s: current is v%d", tc.step, map[string]int{d1: v1, d2: v2}[cur])

			c3 := startChild(t, path, 0)
			if tc.unhealthy {
				testhelp.WaitFor(t, 60*time.Second, "v2 refused", func() bool {
					_, ms := device(h, "dev-fp")
					st := ms["m"].State
					return st == "failed" || st == "rolled_back"
				})
				if got := agenttest.FileDigest(t, agenttest.ModelFile(cfg.ModelDir, "m")); got != d1 {
					t.Fatalf("after recovery current is %s, want v1", got)
				}
			} else {
				waitActive(t, h, "dev-fp", "m", v2, "active")
				if got := agenttest.FileDigest(t, agenttest.ModelFile(cfg.ModelDir, "m")); got != d2 {
					t.Fatalf("after recovery current is %s, want v2", got)
				}
			}
			c3.stop(t)
		})
	}
}
