package chaos

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sort"
	"sync"
	"time"
)

// rolloutOp is one rollout operation sent: its action and whether the cluster acknowledged it
// (acked), refused it (neither) or left it unknown.
type rolloutOp struct {
	action         string
	acked, unknown bool
}

// RolloutLog records the rollout operations of a run: approvals, creations (of an approved and,
// refused every time, of an unapproved version), pauses, resumes and aborts through random nodes.
type RolloutLog struct {
	mu sync.Mutex
	// Ops counts the operations sent; Acked those acknowledged.
	Ops, Acked int
	// ops lists, per rollout id, its operations in the order they were sent.
	ops map[string][]rolloutOp
	// unapprovedAcked counts creations of a rollout of the unapproved version that were
	// acknowledged (each is a finding).
	unapprovedAcked int
}

// The workload's versions: Setup registers 1 and 2; the rollout client approves 1 and never 2.
const (
	approvedVersion   = 1
	unapprovedVersion = 2
)

// RolloutClient creates, pauses, resumes and aborts rollouts of the workload's model over every
// device through random nodes until stop, and now and then tries a rollout of a version nobody
// approved (it must be refused).
// selector picks the rollouts' devices ("" every device).
func (c *Cluster) RolloutClient(seed uint64, selector string, l *RolloutLog, stop <-chan struct{}) {
	r := rand.New(rand.NewPCG(seed, 99))
	l.mu.Lock()
	l.ops = map[string][]rolloutOp{}
	l.mu.Unlock()
	record := func(id, action string, code int) {
		applied, unknown := outcome(code)
		l.mu.Lock()
		defer l.mu.Unlock()
		l.Ops++
		if applied {
			l.Acked++
		}
		if id != "" {
			l.ops[id] = append(l.ops[id], rolloutOp{action, applied, unknown})
		}
	}
	approved := false
	cur := "" // the rollout this client drives; "" when it must create one
	for {
		select {
		case <-stop:
			return
		case <-time.After(time.Duration(150+r.IntN(400)) * time.Millisecond):
		}
		nd := c.Nodes[r.IntN(len(c.Nodes))]
		switch {
		case !approved:
			code, _ := c.Do(nd, http.MethodPost, fmt.Sprintf("/api/v1/models/%s/versions/%d/approve", model, approvedVersion), nil)
			record("", "approve", code)
			approved = code == http.StatusOK || code == http.StatusConflict
		case r.IntN(10) == 0:
			code, b := c.Do(nd, http.MethodPost, "/api/v1/rollouts", map[string]any{"model": model, "version": unapprovedVersion, "selector": selector})
			record("", "create-unapproved", code)
			if code == http.StatusCreated {
				l.mu.Lock()
				l.unapprovedAcked++
				l.mu.Unlock()
				var ro struct {
					ID string `json:"id"`
				}
				_ = json.Unmarshal(b, &ro)
				cur = ro.ID
			}
		case cur == "":
			code, b := c.Do(nd, http.MethodPost, "/api/v1/rollouts", map[string]any{"model": model, "version": approvedVersion,
				"selector": selector, "waves": []int{50, 100}, "bake_seconds": 0})
			var ro struct {
				ID      string `json:"id"`
				Rollout string `json:"rollout"` // a conflict's: the rollout holding the devices
			}
			_ = json.Unmarshal(b, &ro)
			switch {
			case code == http.StatusCreated:
				cur = ro.ID
				record(cur, "create", code)
			case code == http.StatusConflict && ro.Rollout != "":
				// One created by a write of unknown outcome: drive it from here.
				cur = ro.Rollout
				record("", "create", code)
				l.mu.Lock()
				if len(l.ops[cur]) == 0 {
					l.ops[cur] = []rolloutOp{{action: "create", unknown: true}}
				}
				l.mu.Unlock()
			default:
				record("", "create", code)
			}
		default:
			action := []string{"pause", "resume", "abort"}[r.IntN(3)]
			code, _ := c.Do(nd, http.MethodPost, "/api/v1/rollouts/"+cur+"/"+action, map[string]string{"reason": "chaos " + action})
			record(cur, action, code)
			if action == "abort" && (code == http.StatusOK || code == http.StatusConflict) {
				cur = "" // aborted now, or already over (a conflict: it is no longer active)
			}
		}
	}
}

// checkRollouts checks, on every node once they converged: every acknowledged rollout exists;
// its state is what its last acknowledged operation made it, unless a later one's outcome is
// unknown (then one of the states those could make); no two active rollouts hold the devices;
// every device's desired version of the model is an approved one; no rollout of the unapproved
// version was acknowledged. It returns the findings and the number of rollouts checked.
func (c *Cluster) checkRollouts(l *RolloutLog) ([]string, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	if l.unapprovedAcked > 0 {
		out = append(out, fmt.Sprintf("%d rollouts of unapproved version %d were acknowledged", l.unapprovedAcked, unapprovedVersion))
	}
	ids := make([]string, 0, len(l.ops))
	for id := range l.ops {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	states := map[string]string{"create": "running", "resume": "running", "pause": "paused", "abort": "aborted"}
	for _, nd := range c.Nodes {
		for _, id := range ids {
			code, b := c.Do(nd, http.MethodGet, "/api/v1/rollouts/"+id, nil)
			var ro struct {
				State   string `json:"state"`
				Version int    `json:"version"`
			}
			if code != http.StatusOK || json.Unmarshal(b, &ro) != nil {
				out = append(out, fmt.Sprintf("%s: acknowledged rollout %s missing (%d)", nd.ID, id, code))
				continue
			}
			// The states the rollout may be in: the last acknowledged operation's, or any
			// operation's after it whose outcome is unknown.
			ops := l.ops[id]
			allowed := map[string]bool{}
			for i := len(ops) - 1; i >= 0; i-- {
				if ops[i].acked || ops[i].unknown {
					allowed[states[ops[i].action]] = true
				}
				if ops[i].acked {
					break
				}
			}
			if allowed["running"] {
				allowed["completed"] = true // its devices (real agents) may all have got there
			}
			if !allowed[ro.State] {
				out = append(out, fmt.Sprintf("%s: rollout %s is %s; its operations %+v allow %v", nd.ID, id, ro.State, ops, allowed))
			}
		}
		active := 0
		code, b := c.Do(nd, http.MethodGet, "/api/v1/rollouts?limit=1000", nil)
		var page struct {
			Items []struct {
				ID    string `json:"id"`
				State string `json:"state"`
			} `json:"items"`
		}
		if code != http.StatusOK || json.Unmarshal(b, &page) != nil {
			out = append(out, fmt.Sprintf("%s: list rollouts: %d", nd.ID, code))
		}
		for _, ro := range page.Items {
			switch ro.State {
			case "running", "paused":
				active++
			case "completed", "aborted":
			default:
				out = append(out, fmt.Sprintf("%s: rollout %s in state %q", nd.ID, ro.ID, ro.State))
			}
		}
		if active > 1 {
			out = append(out, fmt.Sprintf("%s: %d active rollouts over the same devices", nd.ID, active))
		}
		for d := 0; d < devices; d++ {
			code, b := c.Do(nd, http.MethodGet, fmt.Sprintf("/api/v1/devices/d%d", d), nil)
			var dev struct {
				Desired map[string]struct {
					Version int `json:"version"`
				} `json:"desired"`
			}
			if code != http.StatusOK || json.Unmarshal(b, &dev) != nil {
				out = append(out, fmt.Sprintf("%s: device d%d: %d", nd.ID, d, code))
				continue
			}
			if v := dev.Desired[model].Version; v != 0 && v != approvedVersion {
				out = append(out, fmt.Sprintf("%s: device d%d is told to run %s@%d, which nobody approved", nd.ID, d, model, v))
			}
		}
	}
	return out, len(ids)
}
