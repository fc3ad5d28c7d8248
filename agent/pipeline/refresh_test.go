package pipeline

import (
	"testing"

	"github.com/driftline/driftline/shared/contract"
)

// TestRefreshUnchangedAllocatesNothing: the pipeline asks which model runs for every stream
// (every MQTT data message) and every second; while the answer is the same model version, the
// check allocates nothing (it formatted the version's key each time: for 10,000 fleet agents,
// 20,000 strings a second of garbage). A new version is still picked up at the next check.
func TestRefreshUnchangedAllocatesNothing(t *testing.T) {
	s := mustSchema(t, testContract)
	m := &model{}
	m.set("pump", 3, []byte(testContract), nil)
	h := newHarness(t, Options{Contract: s, Window: contract.Window{Rows: 500, Seconds: 60}, Model: m})
	refresh := func() {
		h.p.mu.Lock()
		h.p.refreshLocked()
		h.p.mu.Unlock()
	}
	refresh()
	if h.p.g == nil || h.p.g.key != "pump@3" {
		t.Fatalf("generation %+v, want pump@3", h.p.g)
	}
	if n := testing.AllocsPerRun(100, refresh); n != 0 {
		t.Fatalf("refresh with the same model version: %.1f allocations, want 0", n)
	}
	m.set("pump", 4, []byte(testContract), nil)
	refresh()
	if h.p.g.key != "pump@4" {
		t.Fatalf("generation %q after version 4, want pump@4", h.p.g.key)
	}
	m.set("", 0, nil, nil)
	refresh()
	if h.p.g == nil || h.p.g.key != "" {
		t.Fatalf("generation %+v with no model, want the configured contract", h.p.g)
	}
	if n := testing.AllocsPerRun(100, refresh); n != 0 {
		t.Fatalf("refresh with no model: %.1f allocations, want 0", n)
	}
}
