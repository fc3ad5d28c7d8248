package systemtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/driftline/driftline/internal/hubproc"
	"github.com/driftline/driftline/internal/testhelp"
	"gopkg.in/yaml.v3"
)

// TestApprovalsSurviveFailover enrols an agent (a real driftline-agent process) while hub1
// leads a three-node cluster, kills hub1, and checks that a version approved under the new
// leader activates on the agent; then hub1 comes back and a third version, approved again,
// activates too. With one signing key per node the agent refused every approval after the
// first leader change (manifest signature refused, reason=unknown_key).
func TestApprovalsSurviveFailover(t *testing.T) {
	c := newMQTTCluster(t, 3)
	lead := c.leader(c.hubs)
	if lead != c.hubs[0] {
		t.Fatalf("leader is %v, want hub1", lead)
	}
	c.createModel(lead, "m")
	v1 := c.pushApproved(lead, "m", []byte("model version one"))

	cfgPath := c.enrolAgent(lead, "dev1")
	ag := c.startAgent("dev1", cfgPath)
	c.assign(lead, "dev1", "m", v1)
	c.waitActive(c.hubs, "dev1", "m", v1, ag)

	old := c.hubs[0]
	c.kill(old)
	live := c.hubs[1:]
	var nl *hub
	testhelp.WaitFor(t, 30*time.Second, "a new leader", func() bool { nl = c.leader(live); return nl != nil })
	t.Logf("new leader %s", nl.ID)
	v2 := c.pushApproved(nl, "m", []byte("model version two"))
	c.assign(nl, "dev1", "m", v2)
	c.waitActive(live, "dev1", "m", v2, ag)

	c.start(old, "")
	c.waitSame(c.hubs)
	lead = c.leader(c.hubs)
	v3 := c.pushApproved(lead, "m", []byte("model version three"))
	c.assign(lead, "dev1", "m", v3)
	c.waitActive(c.hubs, "dev1", "m", v3, ag)
}

// newMQTTCluster starts n hubs, each with its embedded broker on a free port.
func newMQTTCluster(t *testing.T, n int) *cluster {
	t.Helper()
	return startClusterWith(t, n, true)
}

// slowClient is for requests that may wait for a node that is down.
var slowClient = &http.Client{Timeout: 2 * time.Minute}

// agentProc is one driftline-agent process and its output.
type agentProc struct {
	*hubproc.Process
	log *hubproc.Output
}

// enrolAgent adds device id through `driftline device add --agent-config` on h (as an operator
// would) and points the written config at every node's broker. It returns the config's path.
func (c *cluster) enrolAgent(h *hub, id string) string {
	c.t.Helper()
	dir := c.dir("agent-" + id)
	path := filepath.Join(dir, "agent.yaml")
	cmd := exec.Command(binary, "device", "add", id, "--agent-config", path)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "DRIFTLINE_HUB=http://" + h.HTTP, "DRIFTLINE_TOKEN=" + c.token}
	if out, err := cmd.CombinedOutput(); err != nil {
		c.t.Fatalf("device add: %v\n%s", err, out)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		c.t.Fatal(err)
	}
	var cfg map[string]any
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		c.t.Fatal(err)
	}
	var brokers []string
	for _, x := range c.hubs {
		brokers = append(brokers, "tcp://"+x.MQTT)
	}
	cfg["brokers"] = brokers
	cfg["state_dir"] = filepath.Join(dir, "state")
	cfg["model_dir"] = filepath.Join(dir, "models")
	cfg["metrics"] = "off"
	b, _ = yaml.Marshal(cfg)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		c.t.Fatal(err)
	}
	return path
}

// startAgent runs driftline-agent with cfgPath until the test ends.
func (c *cluster) startAgent(id, cfgPath string) *agentProc {
	c.t.Helper()
	a := &agentProc{log: &hubproc.Output{}}
	p, err := hubproc.Start(a.log, filepath.Dir(cfgPath), nil, agentBinary, "run", "--config", cfgPath)
	if err != nil {
		c.t.Fatal(err)
	}
	a.Process = p
	c.t.Cleanup(func() {
		p.Stop(15 * time.Second)
		if c.t.Failed() {
			c.t.Logf("log of agent %s:\n%s", id, a.log.Tail(6000))
		}
	})
	return a
}

// mustDo sends one request to h and fails the test unless it answers want.
func (c *cluster) mustDo(h *hub, method, path string, body any, want int) []byte {
	c.t.Helper()
	code, b := c.do(h, method, path, body)
	if code != want {
		c.t.Fatalf("%s %s on %s: %d %s", method, path, h.ID, code, b)
	}
	return b
}

func (c *cluster) createModel(h *hub, name string) {
	c.t.Helper()
	c.mustDo(h, http.MethodPost, "/api/v1/models", map[string]string{"name": name}, http.StatusCreated)
}

// pushApproved registers data as a new version of model on h and approves it.
func (c *cluster) pushApproved(h *hub, model string, data []byte) int {
	c.t.Helper()
	code, b := c.uploadBytes(h, model, data)
	if code != http.StatusCreated {
		c.t.Fatalf("push %s: %d %s", model, code, b)
	}
	var v struct {
		Version int `json:"version"`
	}
	json.Unmarshal(b, &v)
	// An approval waits up to 30 s for every node to hold the version: longer than client's
	// timeout while a node is down.
	req, _ := http.NewRequest(http.MethodPost, fmt.Sprintf("http://%s/api/v1/models/%s/versions/%d/approve", h.HTTP, model, v.Version), bytes.NewReader([]byte(`{"comment":"ok"}`)))
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", "application/json")
	res, err := slowClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	b, _ = io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		c.t.Fatalf("approve %s@%d: %d %s", model, v.Version, res.StatusCode, b)
	}
	return v.Version
}

func (c *cluster) assign(h *hub, id, model string, version int) {
	c.t.Helper()
	c.mustDo(h, http.MethodPut, "/api/v1/devices/"+id+"/models/"+model, map[string]int{"version": version}, http.StatusOK)
}

// waitActive waits until a node of live says device id runs model@version.
func (c *cluster) waitActive(live []*hub, id, model string, version int, a *agentProc) {
	c.t.Helper()
	var last string
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		for _, h := range live {
			code, b := c.do(h, http.MethodGet, "/api/v1/devices/"+id, nil)
			if code != http.StatusOK {
				continue
			}
			var d struct {
				Reported struct {
					Models map[string]struct {
						Active    *int   `json:"active"`
						State     string `json:"state"`
						LastError string `json:"last_error"`
					} `json:"models"`
				} `json:"reported"`
			}
			json.Unmarshal(b, &d)
			m := d.Reported.Models[model]
			if m.Active != nil && *m.Active == version && m.State != "failed" {
				return
			}
			last = string(b)
		}
		time.Sleep(200 * time.Millisecond)
	}
	c.t.Fatalf("%s never ran %s@%d; last device state: %s\nagent log:\n%s", id, model, version, tail(last, 2000), a.log.Tail(4000))
}
