package chaos

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/driftline/driftline/hub/state"
	"github.com/driftline/driftline/internal/testhelp"
)

// Options configure one run.
type Options struct {
	Seed     uint64
	Nodes    int
	Clients  int
	Duration time.Duration // how long faults are thrown
	// OutDir receives porcupine's HTML visualisation when the history is not linearizable.
	OutDir string
	// Agents real agents (firmware-sim fleet mode, FleetBin) run through the faults; the
	// rollouts then target them only. 0: none.
	Agents   int
	FleetBin string
}

// Result is what a run did and found.
type Result struct {
	Seed                 uint64
	Faults               map[string]int
	Ops, Writes, Unknown int
	Versions             int
	MonoReads            int
	// Linearizable is "yes", "no" or "unknown" (the check timed out).
	Linearizable string
	// Pruned counts writes of unknown outcome left out of the check because no read saw them.
	Pruned int
	// RolloutOps counts the rollout operations sent (RolloutOpsAcked acknowledged) and
	// Rollouts the rollouts checked on every node.
	RolloutOps, RolloutOpsAcked, Rollouts int
	// Agents ran through the faults; AgentsConverged reached their desired version after.
	Agents, AgentsConverged int
	// AgentsRunning run the approved version at the end (the others have no desired version).
	AgentsRunning int
	// AgentKillsChecked counts agent kills after which the agent's model directory and outbox
	// were checked; AgentKillsUnchecked those whose outbox was only checked for its model (no
	// report acknowledged by the hub yet). Reports sums the numbered reports the hub held, in
	// order, of each agent's numbering epochs seen when the agent was checked (at its kills and
	// at the end).
	AgentKillsChecked, AgentKillsUnchecked int
	Reports                                uint64
	// Findings, each a failed check; empty when the run passed.
	Findings []string
}

// Run starts a cluster, throws the seeded fault schedule at it while the workload runs, heals it
// and checks the history and the nodes.
func Run(t testing.TB, bin string, o Options) Result {
	t.Helper()
	res := Result{Seed: o.Seed, Faults: map[string]int{}}
	c := StartCluster(t, bin, o.Nodes)
	if err := Setup(c); err != nil {
		t.Fatalf("seed %d: setup: %v", o.Seed, err)
	}
	h := &History{start: time.Now()}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	fleet, selector := c.startAgents(t, o)
	rl := &RolloutLog{}
	c.startWorkload(o, h, rl, selector, stop, &wg)

	r := rand.New(rand.NewPCG(o.Seed, 7))
	deadline := time.Now().Add(o.Duration)
	for time.Now().Before(deadline) {
		c.fault(r, res.Faults, t)
		time.Sleep(time.Duration(500+r.IntN(1500)) * time.Millisecond) // between faults: time for the cluster to heal
	}
	c.healAll()
	close(stop)
	wg.Wait()

	// Converge: every node at the same applied index.
	var lead *Node
	testhelp.WaitFor(t, 60*time.Second, "a leader after the faults", func() bool { lead = c.Leader(); return lead != nil })
	c.FinalReads(h, lead)
	conv := c.converge()
	if conv != "" {
		res.Findings = append(res.Findings, conv)
	}

	h.mu.Lock()
	ops := append([]porcupine.Operation(nil), h.Ops...)
	res.Ops, res.Unknown, res.Versions = len(ops), h.Unknown, len(h.Versions)
	for _, op := range ops {
		if op.Input.(Input).Write {
			res.Writes++
		}
	}
	versions := append([]int(nil), h.Versions...)
	mono := h.Mono
	h.mu.Unlock()

	// 1. Linearizability of strong reads and writes.
	ops, res.Pruned = pruneUnobserved(ops)
	result, info := porcupine.CheckOperationsVerbose(Model, ops, 3*time.Minute)
	res.Linearizable = map[porcupine.CheckResult]string{porcupine.Ok: "yes", porcupine.Illegal: "no", porcupine.Unknown: "unknown"}[result]
	switch result {
	case porcupine.Illegal:
		path := filepath.Join(o.OutDir, fmt.Sprintf("porcupine-seed-%d.html", o.Seed))
		if err := porcupine.VisualizePath(Model, info, path); err != nil {
			t.Logf("write visualisation: %v", err)
		}
		res.Findings = append(res.Findings, fmt.Sprintf("history of %d operations is not linearizable (visualisation: %s)", len(ops), path))
	case porcupine.Unknown:
		t.Logf("seed %d: the linearizability check timed out (%d operations): not counted as a finding", o.Seed, len(ops))
	}
	// 2. Default reads never go back in time on one node.
	ids := make([]string, 0, len(mono))
	for id := range mono {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		vals := mono[id]
		res.MonoReads += len(vals)
		if i := backInTime(vals); i > 0 {
			res.Findings = append(res.Findings, fmt.Sprintf("%s: a default read returned %d after %d (went back in time)", id, vals[i], vals[i-1]))
		}
	}
	// 3. Equal state digests at an equal applied index (read again until the nodes agree on the
	// index: a leader elected after the faults still writes its node record).
	if f := c.compareDigests(); f != "" {
		res.Findings = append(res.Findings, f)
	}
	c.checkRolloutsAndAgents(rl, fleet, &res)
	// 4. Whole audit chains, 5. no acknowledged version missing, on every node.
	for _, nd := range c.Nodes {
		if err := c.verifyAudit(nd); err != nil {
			res.Findings = append(res.Findings, fmt.Sprintf("%s: audit chain: %v", nd.ID, err))
		}
		for _, v := range versions {
			if code, _ := c.Do(nd, http.MethodGet, fmt.Sprintf("/api/v1/models/%s/versions/%d", model, v), nil); code != http.StatusOK {
				res.Findings = append(res.Findings, fmt.Sprintf("%s: acknowledged version %d missing (%d)", nd.ID, v, code))
			}
		}
	}
	return res
}

// startWorkload starts the clients, the monotonic writer and readers and the rollout client
// (over the devices selector picks); they run until stop is closed, counted in wg.
func (c *Cluster) startWorkload(o Options, h *History, rl *RolloutLog, selector string, stop <-chan struct{}, wg *sync.WaitGroup) {
	for i := 0; i < o.Clients; i++ {
		wg.Add(1)
		go func(i int) { defer wg.Done(); c.Client(i+1, o.Seed, h, stop) }(i)
	}
	wg.Add(2)
	go func() { defer wg.Done(); c.MonoWriter(o.Seed, stop) }()
	go func() { defer wg.Done(); c.RolloutClient(o.Seed, selector, rl, stop) }()
	for _, nd := range c.Nodes {
		wg.Add(1)
		go func(nd *Node) { defer wg.Done(); c.MonoReader(nd, h, stop) }(nd)
	}
}

// startAgents starts o.Agents real agents (none without o.FleetBin) and waits until every one is
// online; it returns them and the selector the rollouts use ("" every device, without agents).
func (c *Cluster) startAgents(t testing.TB, o Options) (*Fleet, string) {
	if o.Agents <= 0 || o.FleetBin == "" {
		return nil, ""
	}
	fleet := c.StartFleet(t, o.FleetBin, o.Agents)
	c.fleet = fleet
	const selector = "fleet=firmware-sim"
	// The fleet enrolls and fetches the root of trust through one node: faults start once
	// every agent is connected (it then fails over between the nodes' brokers by itself).
	testhelp.WaitFor(t, 90*time.Second, "the agents online", func() bool {
		if fleet.Exited() {
			t.Fatalf("seed %d: the agents' process exited before the faults: %s", o.Seed, fleet.tails(2000))
		}
		lead := c.Leader()
		if lead == nil {
			return false
		}
		code, b := c.Do(lead, http.MethodGet, "/api/v1/devices?limit=1000&consistency=strong&selector="+selector, nil)
		return code == http.StatusOK && strings.Count(string(b), `"online":true`) == o.Agents
	})
	return fleet, selector
}

// checkRolloutsAndAgents runs checks 6 and 7 and adds their figures and findings to res.
func (c *Cluster) checkRolloutsAndAgents(rl *RolloutLog, fleet *Fleet, res *Result) {
	// 6. Rollouts: every acknowledged one on every node, in a state its operations allow; no
	// device told to run a version nobody approved.
	rf, n := c.checkRollouts(rl)
	res.Findings = append(res.Findings, rf...)
	res.RolloutOps, res.RolloutOpsAcked, res.Rollouts = rl.Ops, rl.Acked, n
	// 7. Real agents: none runs an unapproved version; all reach their desired version.
	if fleet != nil {
		af, conv, running := c.checkAgents(fleet, 120*time.Second)
		res.Findings = append(res.Findings, af...)
		res.Agents, res.AgentsConverged, res.AgentsRunning = fleet.N, conv, running
		// 8. Killed agents: each left one whole approved model and an outbox holding what the
		// hub lacks (checked at each kill); at the end every agent holds its desired version
		// whole and the hub every report without a hole.
		sf, reports := fleet.stopAndCheck()
		fleet.mu.Lock()
		res.Findings = append(res.Findings, fleet.findings...)
		res.AgentKillsChecked, res.AgentKillsUnchecked = fleet.checked, fleet.skipped
		fleet.mu.Unlock()
		res.Findings = append(res.Findings, sf...)
		res.Reports = reports
	}
}

// pruneUnobserved leaves out the writes of unknown outcome whose value no read returned, on
// registers whose written values are unique (tags, labels). Such a write is invisible: a history
// is linearizable with it (placed where it changes nothing, or never applied) exactly when it is
// without it. Each one otherwise stays open to the end of the history, and porcupine's search
// grows with them (Knossos and Jepsen prune the same way).
func pruneUnobserved(ops []porcupine.Operation) ([]porcupine.Operation, int) {
	seen := map[string]bool{}
	for _, op := range ops {
		if in := op.Input.(Input); !in.Write {
			seen[in.Key+"="+op.Output.(Output).Value] = true
		}
	}
	out := ops[:0:0]
	n := 0
	for _, op := range ops {
		in := op.Input.(Input)
		if in.Write && op.Return == math.MaxInt64 && !strings.HasPrefix(in.Key, "alias/") && !seen[in.Key+"="+in.Value] {
			n++
			continue
		}
		out = append(out, op)
	}
	return out, n
}

// backInTime returns the first position where vals decreases, or -1.
func backInTime(vals []int) int {
	for i := 1; i < len(vals); i++ {
		if vals[i] < vals[i-1] {
			return i
		}
	}
	return -1
}

// fault throws one fault from the schedule and undoes it (a killed node is restarted).
func (c *Cluster) fault(r *rand.Rand, count map[string]int, t testing.TB) {
	pick := func(leaderBias bool) *Node {
		if leaderBias && r.IntN(100) < 70 {
			if l := c.Leader(); l != nil {
				return l
			}
		}
		return c.Nodes[r.IntN(len(c.Nodes))]
	}
	hold := time.Duration(1000+r.IntN(3000)) * time.Millisecond
	if c.agentFault(r, count, hold) {
		return
	}
	switch k := r.IntN(100); {
	case k < 30:
		nd := pick(true)
		count["kill"]++
		c.Kill(nd)
		time.Sleep(hold / 2)
		c.Restart(nd)
	case k < 50:
		nd := pick(true)
		count["pause"]++
		c.Pause(nd)
		time.Sleep(hold)
		c.Resume(nd)
	case k < 60:
		// One node's wall clock jumps (the leader preferred), by up to two hours either way,
		// and back after the hold.
		nd := pick(true)
		jump := time.Duration(1+r.IntN(120)) * time.Minute
		if r.IntN(2) == 0 {
			jump = -jump
		}
		count["clock_jump"]++
		c.ClockJump(nd, jump)
		time.Sleep(hold)
		c.ClockJump(nd, 0)
	case k < 70:
		nd := pick(true)
		count["cut"]++
		c.Cut(nd)
		time.Sleep(hold)
		c.Heal(nd)
	case k < 80:
		// A partition between two nodes (the leader preferred) that both still reach the rest:
		// both directions cut, or one only (asymmetric).
		a := pick(true)
		b := c.Nodes[r.IntN(len(c.Nodes))]
		for b == a {
			b = c.Nodes[r.IntN(len(c.Nodes))]
		}
		if r.IntN(2) == 0 {
			count["link_cut"]++
			c.CutLink(a, b)
			c.CutLink(b, a)
		} else {
			count["link_cut_one_way"]++
			if r.IntN(2) == 0 {
				a, b = b, a
			}
			c.CutLink(a, b)
		}
		time.Sleep(hold)
		c.Heal(a)
		c.Heal(b)
	case k < 85:
		// One directed link slowed.
		a, b := c.Nodes[r.IntN(len(c.Nodes))], pick(true)
		for b == a {
			a = c.Nodes[r.IntN(len(c.Nodes))]
		}
		count["link_slow"]++
		c.SlowLink(a, b, 200*time.Millisecond, 100*time.Millisecond)
		time.Sleep(hold)
		c.Heal(a)
	case k < 92:
		// A slow disk on one node (the leader preferred): every fsync 200 ms late.
		nd := pick(true)
		undo, ok := c.SlowDisk(nd, 200*time.Millisecond)
		if !ok {
			if count["slow_fsync_skipped"] == 0 {
				t.Logf("SKIPPED slow-disk faults: strace is missing or cannot attach (make ci-deps installs it)")
			}
			count["slow_fsync_skipped"]++
			return
		}
		count["slow_fsync"]++
		time.Sleep(hold)
		undo()
	default:
		nd := pick(false)
		count["slow"]++
		c.Slow(nd, 100*time.Millisecond, 50*time.Millisecond)
		time.Sleep(hold)
		c.Heal(nd)
	}
}

// agentFault, one slot in five when the run has agents, kills an agent with SIGKILL at this
// random moment and starts it again (Fleet.KillAgent), and reports whether it did. It draws from
// r only with agents, so that a seed replays the same hub faults without them.
func (c *Cluster) agentFault(r *rand.Rand, count map[string]int, hold time.Duration) bool {
	if c.fleet == nil || r.IntN(100) >= 20 {
		return false
	}
	count["agent_kill"]++
	c.fleet.KillAgent(r, hold/2)
	return true
}

func (c *Cluster) healAll() {
	for _, nd := range c.Nodes {
		c.Heal(nd)
		c.ClockJump(nd, 0)
		if nd.Paused() {
			c.Resume(nd)
		}
		if !nd.Running() {
			c.Restart(nd)
		}
	}
}

// converge waits until every node applied the leader's commit index; it returns a finding when
// they do not within a minute.
func (c *Cluster) converge() string {
	deadline := time.Now().Add(60 * time.Second)
	var last []string
	for time.Now().Before(deadline) {
		var want uint64
		sts := map[string]Status{}
		ok := true
		for _, nd := range c.Nodes {
			st, good := c.Status(nd)
			if !good {
				ok = false
				break
			}
			sts[nd.ID] = st
			want = max(want, st.CommitIndex)
		}
		if ok {
			last = last[:0]
			for id, st := range sts {
				if st.AppliedIndex < want {
					last = append(last, fmt.Sprintf("%s at %d of %d", id, st.AppliedIndex, want))
				}
			}
			if len(last) == 0 {
				// Equal applied indexes; the digests are read next.
				return ""
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Sprintf("nodes did not converge within 60 s: %v", last)
}

// compareDigests reads every node's state digest until all are at one applied index (for up to
// 30 s), and returns a finding when their digests differ there, or they never agree on an index.
func (c *Cluster) compareDigests() string {
	deadline := time.Now().Add(30 * time.Second)
	var last map[string]string
	for time.Now().Before(deadline) {
		last = map[string]string{}
		indexes, digests := map[uint64]bool{}, map[string]bool{}
		for _, nd := range c.Nodes {
			code, b := c.Do(nd, http.MethodGet, "/api/v1/cluster/digest", nil)
			var d struct {
				AppliedIndex uint64 `json:"applied_index"`
				Digest       string `json:"digest"`
			}
			if code != http.StatusOK || json.Unmarshal(b, &d) != nil {
				last[nd.ID] = fmt.Sprintf("error %d", code)
				indexes[0] = true
				continue
			}
			last[nd.ID] = fmt.Sprintf("%d/%s", d.AppliedIndex, d.Digest)
			indexes[d.AppliedIndex] = true
			digests[d.Digest] = true
		}
		if len(indexes) == 1 && !indexes[0] {
			if len(digests) == 1 {
				return ""
			}
			return fmt.Sprintf("state digests differ at one applied index: %v", last)
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Sprintf("nodes never reported one applied index within 30 s: %v", last)
}

// verifyAudit walks nd's audit log (local reads) and checks the hash chain.
func (c *Cluster) verifyAudit(nd *Node) error {
	var all []state.AuditEntry
	cursor := ""
	for {
		code, b := c.Do(nd, http.MethodGet, "/api/v1/audit?limit=500&cursor="+cursor, nil)
		if code != http.StatusOK {
			return fmt.Errorf("list: %d %s", code, b)
		}
		var page struct {
			Items      []state.AuditEntry `json:"items"`
			NextCursor *string            `json:"next_cursor"`
		}
		if err := json.Unmarshal(b, &page); err != nil {
			return err
		}
		all = append(all, page.Items...)
		if page.NextCursor == nil {
			break
		}
		cursor = *page.NextCursor
	}
	if i, err := state.VerifyChain("", all); err != nil {
		return fmt.Errorf("entry %d of %d: %w", i, len(all), err)
	}
	return nil
}

// Summary is one line of figures.
func (r Result) Summary() string {
	return fmt.Sprintf("seed %d: faults %v; %d operations checked (%d writes, %d of unknown outcome, %d unobserved ones pruned), linearizable: %s; %d versions registered, %d default reads; %d rollout operations (%d acknowledged) over %d rollouts checked; %d of %d agents converged (%d running the approved version); %d agent kills checked (%d before the hub acknowledged a report), %d numbered reports held by the hub in the epochs checked; %d findings",
		r.Seed, r.Faults, r.Ops, r.Writes, r.Unknown, r.Pruned, r.Linearizable, r.Versions, r.MonoReads, r.RolloutOps, r.RolloutOpsAcked, r.Rollouts, r.AgentsConverged, r.Agents, r.AgentsRunning, r.AgentKillsChecked+r.AgentKillsUnchecked, r.AgentKillsUnchecked, r.Reports, len(r.Findings))
}

// EnvSeed reads CHAOS_SEED, else picks one from the clock.
func EnvSeed() uint64 {
	var s uint64
	if _, err := fmt.Sscan(os.Getenv("CHAOS_SEED"), &s); err == nil && s != 0 {
		return s
	}
	return uint64(time.Now().UnixNano())
}
