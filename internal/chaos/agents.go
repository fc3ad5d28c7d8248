package chaos

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/driftline/driftline/agent/agenttest"
	"github.com/driftline/driftline/agent/modelstore"
	"github.com/driftline/driftline/hub/state"
	"github.com/driftline/driftline/internal/hubproc"
)

// fleetPrefix starts the ids of the harness's real agents (firmware-sim fleet mode).
const fleetPrefix = "agent-"

// Fleet is the harness's real agents: one `firmware-sim fleet --devices 1` process per agent
// (so that one can be killed alone), each connected to every node's embedded broker (it fails
// over when a node dies) and fed a scenario in-process, so that its pipeline sends numbered
// reports.
type Fleet struct {
	N                 int
	c                 *Cluster
	t                 testing.TB
	bin               string
	brokers, scenario string
	agents            []*fleetAgent

	mu sync.Mutex
	// findings are failed checks of killed agents (checkKilled).
	findings []string
	// checked counts the kills whose agent's model directory and outbox were checked; skipped
	// those whose outbox did not yet wait for the hub (no report acknowledged yet).
	checked, skipped int
	// epochs holds, per agent and numbering epoch seen when the agent was checked (at a kill
	// or at the end), how many numbered reports of it the hub held then, in order.
	epochs map[string]uint64
}

// fleetAgent is one agent's process and state directory (db/ and models/ID/).
type fleetAgent struct {
	id, dir string
	n       int
	out     *hubproc.Output
	mu      sync.Mutex
	proc    *hubproc.Process
	// killed says the current process was killed by the harness (its exit is expected).
	killed bool
}

// scenarioYAML feeds every agent a reading a second of one number (and the device id and time
// the scenario adds, which the dataset's contract names as labels).
const scenarioYAML = `name: chaos
description: readings for the chaos harness's agents
device_id: "agent-{n}"
rate: 5
batch: 1
fields:
  - {name: x, dist: normal, mean: 1, stddev: 0.1}
`

// StartFleet starts n agents enrolled through the leader. They run until the test ends.
func (c *Cluster) StartFleet(t testing.TB, bin string, n int) *Fleet {
	t.Helper()
	var brokers []string
	for _, nd := range c.Nodes {
		brokers = append(brokers, "tcp://"+nd.MQTT)
	}
	f := &Fleet{N: n, c: c, t: t, bin: bin, brokers: strings.Join(brokers, ","), scenario: filepath.Join(t.TempDir(), "scenario.yaml"),
		epochs: map[string]uint64{}}
	if err := os.WriteFile(f.scenario, []byte(scenarioYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= n; i++ {
		a := &fleetAgent{id: fmt.Sprintf("%s%d", fleetPrefix, i), dir: t.TempDir(), n: i, out: &hubproc.Output{}}
		f.agents = append(f.agents, a)
		lead := c.Leader()
		if lead == nil {
			t.Fatal("no leader to enroll the agents")
		}
		if err := f.start(a, lead); err != nil {
			t.Fatalf("start agent %s: %v", a.id, err)
		}
	}
	t.Cleanup(func() {
		for _, a := range f.agents {
			if p := a.process(); p != nil {
				p.Stop(15 * time.Second)
			}
			if t.Failed() {
				t.Logf("agent %s's log (tail):\n%s", a.id, a.out.Tail(3000))
			}
		}
	})
	return f
}

// start starts a's process, enrolling (the first time) and reading the root of trust through nd.
func (f *Fleet) start(a *fleetAgent, nd *Node) error {
	p, err := hubproc.Start(a.out, a.dir, nil, f.bin, "fleet", "--devices", "1", "--hub", nd.URL(), "--token", f.c.Token,
		"--broker", f.brokers, "--state-dir", a.dir, "--id-pattern", a.id, "--heartbeat", "2s", "--summary-every", "1h",
		"--log-level", "warn", "--scenario", f.scenario, "--seed", fmt.Sprint(a.n), "--window", "2s")
	if err != nil {
		return err
	}
	a.mu.Lock()
	a.proc, a.killed = p, false
	a.mu.Unlock()
	return nil
}

func (a *fleetAgent) process() *hubproc.Process {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.proc
}

// Exited reports whether an agent's process ended without the harness killing it.
func (f *Fleet) Exited() bool {
	for _, a := range f.agents {
		a.mu.Lock()
		p, killed := a.proc, a.killed
		a.mu.Unlock()
		select {
		case <-p.Exited():
			if !killed {
				return true
			}
		default:
		}
	}
	return false
}

// tails returns the end of every agent's output.
func (f *Fleet) tails(n int) string {
	var b strings.Builder
	for _, a := range f.agents {
		fmt.Fprintf(&b, "%s: %s\n", a.id, a.out.Tail(n))
	}
	return b.String()
}

// KillAgent is the agent fault: one agent (r picks it) is killed with SIGKILL, wherever it is
// (start-up, a pull, an activation, a health check, reports waiting in its outbox), its model
// directory and outbox are checked as it left them (checkKilled), and after hold it is started
// again.
func (f *Fleet) KillAgent(r *rand.Rand, hold time.Duration) {
	a := f.agents[r.IntN(len(f.agents))]
	a.mu.Lock()
	p := a.proc
	a.killed = true
	a.mu.Unlock()
	p.Kill()
	f.checkKilled(a)
	time.Sleep(hold) // the agent stays down (a fault's hold, not a synchronisation)
	f.restart(a)
}

// restart starts a again through the leader (it reads the hub's facts at start), trying again
// through another node when the process exits (the node it asked died meanwhile).
func (f *Fleet) restart(a *fleetAgent) {
	for try := 0; try < 5; try++ {
		nd := f.c.Leader()
		if nd == nil {
			nd = f.c.Nodes[try%len(f.c.Nodes)]
		}
		if err := f.start(a, nd); err != nil {
			f.t.Logf("restart agent %s: %v", a.id, err)
			continue
		}
		p := a.process()
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			select {
			case <-p.Exited():
				f.t.Logf("agent %s exited at its restart through %s (try %d): %s", a.id, nd.ID, try+1, a.out.Tail(300))
				a.mu.Lock()
				a.killed = true // an exit the harness handles here
				a.mu.Unlock()
			default:
				if f.online(a.id) {
					return
				}
				time.Sleep(200 * time.Millisecond) // polling the hub for a condition
				continue
			}
			break
		}
		select {
		case <-p.Exited():
		default:
			return // running, not yet online: the end checks say whether it converged
		}
	}
}

// online reports whether the leader shows the device connected.
func (f *Fleet) online(id string) bool {
	lead := f.c.Leader()
	if lead == nil {
		return false
	}
	code, b := f.c.Do(lead, http.MethodGet, "/api/v1/devices/"+id, nil)
	return code == http.StatusOK && strings.Contains(string(b), `"online":true`)
}

// hubReports reads, through the leader (a strong read), what the hub holds of the device's
// numbered reports.
func (f *Fleet) hubReports(id string) (agenttest.HubReports, bool) {
	lead := f.c.Leader()
	if lead == nil {
		return agenttest.HubReports{}, false
	}
	code, b := f.c.Do(lead, http.MethodGet, "/api/v1/devices/"+id+"?consistency=strong", nil)
	var d struct {
		Reports agenttest.HubReports `json:"reports"`
	}
	if code != http.StatusOK || json.Unmarshal(b, &d) != nil {
		return agenttest.HubReports{}, false
	}
	return d.Reports, true
}

// checkAgentState checks a stopped agent: its model directory holds one whole version, checked
// as the agent checks it at start (modelstore.CheckLinks), that is the approved version (or
// none yet), and the desired one when want > 0; its outbox holds, beside what the hub holds,
// every numbered report it ever queued (agenttest.CheckHeld). It returns the failures, and
// whether the outbox was checked (it is not while no report was acknowledged by the hub yet).
func (f *Fleet) checkAgentState(a *fleetAgent, when string, want int) ([]string, bool) {
	var out []string
	cur, _, err := modelstore.CheckLinks(filepath.Join(a.dir, "models", a.id), model)
	switch {
	case err != nil:
		out = append(out, fmt.Sprintf("%s %s: the model directory is not whole: %v", a.id, when, err))
	case cur.Version != 0 && cur.Version != approvedVersion:
		out = append(out, fmt.Sprintf("%s %s: current is %s@%d, which nobody approved", a.id, when, model, cur.Version))
	case want > 0 && cur.Version != want:
		out = append(out, fmt.Sprintf("%s %s: current is %s@%d, desired %d", a.id, when, model, cur.Version, want))
	}
	held, err := agenttest.Outbox(filepath.Join(a.dir, "db"), a.id)
	if err != nil {
		return append(out, fmt.Sprintf("%s %s: read the outbox: %v", a.id, when, err)), false
	}
	if !held.AwaitHub {
		return out, false
	}
	var hub agenttest.HubReports
	ok := false
	for try := 0; try < 50 && !ok; try++ {
		if hub, ok = f.hubReports(a.id); !ok {
			time.Sleep(200 * time.Millisecond) // a leader elected meanwhile: polling for one
		}
	}
	if !ok {
		return append(out, fmt.Sprintf("%s %s: the hub's report cursor could not be read", a.id, when)), false
	}
	if _, err := agenttest.CheckHeld(held, hub); err != nil {
		out = append(out, fmt.Sprintf("%s %s: %v", a.id, when, err))
	}
	if hub.Epoch == held.Epoch {
		f.mu.Lock()
		k := fmt.Sprintf("%s/%d", a.id, held.Epoch)
		f.epochs[k] = max(f.epochs[k], hub.Through)
		f.mu.Unlock()
	}
	return out, true
}

// checkKilled checks a killed agent's state (checkAgentState) and records the outcome.
func (f *Fleet) checkKilled(a *fleetAgent) {
	found, checked := f.checkAgentState(a, "after a kill", 0)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.findings = append(f.findings, found...)
	if checked {
		f.checked++
	} else {
		f.skipped++
	}
}

// stopAndCheck ends the run's agents: once the hub holds every device's reports without a hole
// (or after a minute), each agent is stopped and its state checked (checkAgentState) against
// its desired version, read from the leader.
// It returns the failures and the numbered reports the hub held, without a hole, of the epochs
// seen when the agents were checked.
func (f *Fleet) stopAndCheck() ([]string, uint64) {
	var out []string
	var reports uint64
	for _, a := range f.agents {
		want := 0
		if lead := f.c.Leader(); lead != nil {
			var d state.Device
			if code, b := f.c.Do(lead, http.MethodGet, "/api/v1/devices/"+a.id+"?consistency=strong", nil); code == http.StatusOK && json.Unmarshal(b, &d) == nil {
				want = d.Desired[model].Version
			}
		}
		deadline := time.Now().Add(60 * time.Second)
		var hub agenttest.HubReports
		for {
			ok := false
			hub, ok = f.hubReports(a.id)
			if (ok && hub.Pending == 0) || time.Now().After(deadline) {
				break
			}
			time.Sleep(200 * time.Millisecond) // polling the hub for a condition
		}
		if p := a.process(); p != nil {
			a.mu.Lock()
			a.killed = true
			a.mu.Unlock()
			p.Stop(15 * time.Second)
		}
		found, _ := f.checkAgentState(a, "at the end", want)
		out = append(out, found...)
	}
	f.mu.Lock()
	for _, n := range f.epochs {
		reports += n
	}
	f.mu.Unlock()
	return out, reports
}

// checkAgents checks the real agents once the faults stopped: none ever reports running a
// version of the workload's model other than the approved one (the others are unapproved and
// unsigned), and within timeout every agent runs what the hub wants it to (its desired version,
// or, with none, whatever approved version it had). It returns the findings, how many agents
// converged and how many run the approved version.
func (c *Cluster) checkAgents(f *Fleet, timeout time.Duration) ([]string, int, int) {
	if f.Exited() {
		return []string{"an agent's process exited during the run: " + f.tails(1000)}, 0, 0
	}
	var out []string
	var last []state.Device
	converged, running := 0, 0
	deadline := time.Now().Add(timeout)
	for {
		lead := c.Leader()
		var devs []state.Device
		if lead != nil {
			code, b := c.Do(lead, http.MethodGet, "/api/v1/devices?limit=1000&consistency=strong", nil)
			var page struct {
				Items []state.Device `json:"items"`
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
