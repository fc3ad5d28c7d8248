package chaos

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/driftline/driftline/internal/hubproc"
)

// fleetPrefix starts the ids of the harness's real agents (firmware-sim fleet mode).
const fleetPrefix = "agent-"

// Fleet is a firmware-sim fleet process: n real agents in one process, each connected to every
// node's embedded broker (they fail over when a node dies).
type Fleet struct {
	N    int
	proc *hubproc.Process
	out  *hubproc.Output
}

// StartFleet starts n agents enrolled through the leader. They run until StopFleet.
func (c *Cluster) StartFleet(t testing.TB, bin string, n int) *Fleet {
	t.Helper()
	lead := c.Leader()
	if lead == nil {
		t.Fatal("no leader to enroll the agents")
	}
	var brokers []string
	for _, nd := range c.Nodes {
		brokers = append(brokers, "tcp://"+nd.MQTT)
	}
	f := &Fleet{N: n, out: &hubproc.Output{}}
	var err error
	f.proc, err = hubproc.Start(f.out, t.TempDir(), nil, bin, "fleet", "--devices", fmt.Sprint(n), "--hub", lead.URL(), "--token", c.Token,
		"--broker", strings.Join(brokers, ","), "--state-dir", filepath.Join(t.TempDir(), "fleet"),
		"--id-pattern", fleetPrefix+"{n}", "--heartbeat", "2s", "--summary-every", "1h", "--log-level", "warn")
	if err != nil {
		t.Fatalf("start the agents: %v", err)
	}
	t.Cleanup(func() {
		f.proc.Stop(15 * time.Second)
		if t.Failed() {
			t.Logf("agents' log (tail):\n%s", f.out.Tail(3000))
		}
	})
	return f
}

// Exited reports whether the fleet process ended.
func (f *Fleet) Exited() bool {
	select {
	case <-f.proc.Exited():
		return true
	default:
		return false
	}
}

// agentView is the part of a device record the agent checks read.
type agentView struct {
	ID      string `json:"id"`
	Desired map[string]struct {
		Version int `json:"version"`
	} `json:"desired"`
	Reported struct {
		Models map[string]struct {
			Active *int   `json:"active"`
			State  string `json:"state"`
		} `json:"models"`
	} `json:"reported"`
}

// checkAgents checks the real agents once the faults stopped: none ever reports running a
// version of the workload's model other than the approved one (the others are unapproved and
// unsigned), and within timeout every agent runs what the hub wants it to (its desired version,
// or, with none, whatever approved version it had). It returns the findings, how many agents
// converged and how many run the approved version.
func (c *Cluster) checkAgents(f *Fleet, timeout time.Duration) ([]string, int, int) {
	if f.Exited() {
		return []string{"the agents' process exited during the run: " + f.out.Tail(1000)}, 0, 0
	}
	var out []string
	var last []agentView
	converged, running := 0, 0
	deadline := time.Now().Add(timeout)
	for {
		lead := c.Leader()
		var devs []agentView
		if lead != nil {
			code, b := c.Do(lead, http.MethodGet, "/api/v1/devices?limit=1000&consistency=strong", nil)
			var page struct {
				Items []agentView `json:"items"`
			}
			if code == http.StatusOK && json.Unmarshal(b, &page) == nil {
				for _, d := range page.Items {
					if strings.HasPrefix(d.ID, fleetPrefix) {
						devs = append(devs, d)
					}
				}
			}
		}
		converged, running = 0, 0
		for _, d := range devs {
			m, ok := d.Reported.Models[model]
			if ok && m.Active != nil && *m.Active != approvedVersion {
				out = append(out, fmt.Sprintf("agent %s runs %s@%d, which nobody approved", d.ID, model, *m.Active))
			}
			if ok && m.Active != nil && *m.Active == approvedVersion {
				running++
			}
			want := d.Desired[model].Version
			if want == 0 || (ok && m.Active != nil && *m.Active == want) {
				converged++
			}
		}
		if len(out) > 0 {
			return out, converged, running
		}
		last = devs
		if len(devs) == f.N && converged == f.N {
			return nil, converged, running
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond) // polling the cluster for a condition
	}
	var lag []string
	for _, d := range last {
		m := d.Reported.Models[model]
		active := 0
		if m.Active != nil {
			active = *m.Active
		}
		lag = append(lag, fmt.Sprintf("%s wants %d runs %d (%s)", d.ID, d.Desired[model].Version, active, m.State))
	}
	sort.Strings(lag)
	return []string{fmt.Sprintf("%d of %d agents converged to their desired version within %v: %v", converged, f.N, timeout, lag)}, converged, running
}
