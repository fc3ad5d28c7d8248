package dashboard_test

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/driftline/driftline/hub/state"
)

// TestAuditChainInBrowser checks the browser's chain verification against hub/state's own
// AuditHash: a chain the hub builds verifies, and each kind of damage is found at the right
// entry.
func TestAuditChainInBrowser(t *testing.T) {
	b := startBrowser(t)
	b.loadDashboard()

	chain := func() []state.AuditEntry {
		details := []string{"", "production=3", "ünïcödé € 日本", "a:b;c", "model:temp-model@1 devices=5 waves=[3 5] gates="}
		var out []state.AuditEntry
		prev := ""
		for i, d := range details {
			e := state.AuditEntry{Seq: uint64(i + 1), Index: uint64(9_007_199_254_740 + i), Time: 1764096000000 + int64(i)*1000,
				Actor: "admin", Action: "test.action", Object: fmt.Sprintf("device:edge-%d", i), Detail: d, PrevHash: prev}
			e.Hash = state.AuditHash(e)
			prev = e.Hash
			out = append(out, e)
		}
		return out
	}
	type result struct {
		OK     bool    `json:"ok"`
		Bad    *uint64 `json:"bad"`
		Hashes int     `json:"hashes"`
		Links  int     `json:"links"`
		Reason string  `json:"reason"`
	}
	verify := func(entries []state.AuditEntry) result {
		t.Helper()
		js, err := json.Marshal(entries)
		if err != nil {
			t.Fatal(err)
		}
		return eval[result](b, b.ctx, fmt.Sprintf(`import('/ui/js/auditchain.js').then((m) => m.verifyChain(%s))`, js))
	}

	tampered := chain()
	tampered[2].Detail = "ünïcödé € 日本!"
	relinked := chain()
	relinked[3].PrevHash = relinked[1].Hash
	relinked[3].Hash = state.AuditHash(relinked[3]) // its own hash is right, its link is not
	firstWithPrev := chain()[1:]
	firstWithPrev[0].Seq = 1
	firstWithPrev[0].Hash = state.AuditHash(firstWithPrev[0])
	full := chain()
	cases := []struct {
		name    string
		entries []state.AuditEntry
		ok      bool
		bad     uint64
		links   int
	}{
		{"whole chain", full, true, 0, 4},
		{"filtered", []state.AuditEntry{full[0], full[2], full[4]}, true, 0, 0},
		{"out of order", []state.AuditEntry{full[3], full[0], full[2], full[1], full[4]}, true, 0, 4},
		{"content changed", tampered, false, 3, 0},
		{"link broken", relinked, false, 4, 0},
		{"first entry with a prev_hash", firstWithPrev, false, 1, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := verify(c.entries)
			if r.OK != c.ok {
				t.Fatalf("ok %v, want %v: %+v", r.OK, c.ok, r)
			}
			if c.ok && (r.Hashes != len(c.entries) || r.Links != c.links) {
				t.Errorf("checked %d hashes and %d links, want %d and %d", r.Hashes, r.Links, len(c.entries), c.links)
			}
			if !c.ok && (r.Bad == nil || *r.Bad != c.bad) {
				t.Errorf("first bad entry %v, want %d (%s)", r.Bad, c.bad, r.Reason)
			}
		})
	}
	if p := b.problems(); len(p) > 0 {
		t.Errorf("browser console: %v", p)
	}
}
