package demo

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"
)

// narrator polls the hub and prints one line per change it sees: a device going online or
// offline, a device's active version or model state changing, drift appearing or clearing,
// and a rollout's state, wave or gate values changing.
//
// Drift belongs to a version's series of windows: "drift cleared" is said only when the version
// that drifted is still the one running and its newest window is clean. A device that leaves
// the drifting version (rolled back, or moved on) ends that series instead: the windows of the
// new version, or a last clean window of the old one, say nothing about the old drift.
type narrator struct {
	api   *hubAPI
	out   io.Writer
	model string
	start time.Time

	mu       sync.Mutex
	devs     map[string]string // id -> last printed device line key
	drift    map[string]int    // id -> the version whose drift was last narrated (0: none)
	rolls    map[string]string // id -> last printed rollout key
	gates    map[string]string
	seenDrft map[string]bool // devices that reported dataset drift at least once
}

func newNarrator(api *hubAPI, out io.Writer, model string, start time.Time) *narrator {
	return &narrator{api: api, out: out, model: model, start: start,
		devs: map[string]string{}, drift: map[string]int{}, rolls: map[string]string{}, gates: map[string]string{}, seenDrft: map[string]bool{}}
}

// say prints one narrative line, stamped with the time since the demo started.
func (n *narrator) say(format string, args ...any) {
	n.mu.Lock()
	defer n.mu.Unlock()
	fmt.Fprintf(n.out, "[%5.1fs] %s\n", time.Since(n.start).Seconds(), fmt.Sprintf(format, args...))
}

// run polls every interval until ctx ends.
func (n *narrator) run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		n.poll(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (n *narrator) poll(ctx context.Context) {
	if devs, err := n.api.devices(ctx); err == nil {
		for _, d := range devs {
			n.device(d)
		}
	}
	if rs, err := n.api.rollouts(ctx); err == nil {
		for _, r := range rs {
			n.rollout(r)
		}
	}
}

func (n *narrator) device(d device) {
	active, state, activeV := "none", "", 0
	if m, ok := d.Reported.Models[n.model]; ok {
		if m.Active != nil {
			active, activeV = fmt.Sprintf("v%d", *m.Active), *m.Active
		}
		state = m.State
	}
	key := fmt.Sprintf("%v|%s|%s", d.Online, active, state)
	// The version whose drift the device reports now: its summary says drift, and it is about
	// the version running (or the device has not said what runs).
	drifting := 0
	if h := d.Health; h != nil && h.DatasetDrift && (activeV == 0 || h.Version == activeV) {
		drifting = h.Version
	}
	n.mu.Lock()
	prev, seen := n.devs[d.ID]
	n.devs[d.ID] = key
	prevDrift := n.drift[d.ID]
	n.drift[d.ID] = drifting
	if d.Health != nil && d.Health.DatasetDrift {
		n.seenDrft[d.ID] = true
	}
	n.mu.Unlock()
	if (!seen && (d.Online || active != "none")) || (seen && prev != key) {
		online := "offline"
		if d.Online {
			online = "online"
		}
		line := fmt.Sprintf("device %s %s, %s %s", d.ID, online, n.model, active)
		if state != "" {
			line += " (" + state + ")"
		}
		n.say("%s", line)
	}
	if drifting == prevDrift {
		return
	}
	switch {
	case drifting != 0:
		n.say("device %s reports dataset drift on %s v%d: drift share %.2f (window of %d rows)", d.ID, n.model, drifting, d.Health.DriftShare, d.Health.Rows)
	case activeV != 0 && activeV != prevDrift:
		how := "moved"
		if state == "rolled_back" {
			how = "rolled back"
		}
		n.say("device %s: %s, now on %s v%d: the v%d drift series ended (not cleared)", d.ID, how, n.model, activeV, prevDrift)
	case d.Health != nil && d.Health.Version == prevDrift:
		n.say("device %s: drift cleared (v%d, drift share %.2f)", d.ID, prevDrift, d.Health.DriftShare)
	}
}

func (n *narrator) rollout(r rollout) {
	key := fmt.Sprintf("%s|%d|%s", r.State, r.Wave, r.Reason)
	gk := gatesText(r.Gates)
	n.mu.Lock()
	prev, seen := n.rolls[r.ID]
	n.rolls[r.ID] = key
	prevG := n.gates[r.ID]
	n.gates[r.ID] = gk
	n.mu.Unlock()
	if !seen || prev != key {
		line := fmt.Sprintf("rollout %s (%s v%d): %s, wave %d, devices %s", short(r.ID), r.Model, r.Version, r.State, r.Wave, countsText(r.Devices))
		if r.Reason != "" {
			line += ": " + r.Reason
		}
		n.say("%s", line)
	}
	if gk != "" && gk != prevG {
		n.say("rollout %s gates: %s", short(r.ID), gk)
	}
}

// driftSeen returns the devices that reported dataset drift at least once.
func (n *narrator) driftSeen() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []string
	for id := range n.seenDrft {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

func gatesText(g map[string]gate) string {
	var parts []string
	for k, v := range g {
		s := fmt.Sprintf("%s %.2f (threshold %.2f, evidence %d)", k, v.Value, v.Threshold, v.Evidence)
		if v.Failed {
			s += " FAILED"
		}
		parts = append(parts, s)
	}
	sort.Strings(parts)
	return strings.Join(parts, "; ")
}

func countsText(c map[string]int) string {
	var parts []string
	for k, v := range c {
		if v > 0 {
			parts = append(parts, fmt.Sprintf("%s=%d", k, v))
		}
	}
	sort.Strings(parts)
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, " ")
}

func short(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}
