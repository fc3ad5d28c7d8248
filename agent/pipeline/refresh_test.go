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

// BenchmarkIngestOneReading is one MQTT data message of one reading (what a device's firmware
// sends once a second, and what each fleet agent takes): the per-message cost of the path.
func BenchmarkIngestOneReading(b *testing.B) {
	// The fleet benchmark's contract (firmware-sim/demo) and one reading of its scenario.
	const doc = `{"fields":[{"name":"device_id","type":"string","x-driftline":{"role":"label"}},` +
		`{"name":"ts","type":"integer","x-driftline":{"role":"label"}},` +
		`{"name":"temperature","type":"number","constraints":{"required":true,"minimum":-40,"maximum":150}},` +
		`{"name":"humidity","type":"number","constraints":{"minimum":0,"maximum":100}},` +
		`{"name":"vibration","type":"number","constraints":{"minimum":0}},` +
		`{"name":"mode","type":"string","constraints":{"enum":["idle","run","clean"]}}]}`
	s := mustSchema(b, doc)
	m := &model{}
	m.set("pump", 3, []byte(doc), nil)
	h := newHarness(b, Options{Contract: s, Window: contract.Window{Rows: 1 << 30, Seconds: 1 << 20}, Model: m})
	msg := []byte(`{"device_id":"fleet-00001","ts":1765000000000,"temperature":70.812,"humidity":44.1,"vibration":0.513,"mode":"run"}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := h.p.IngestPayload("mqtt", msg); err != nil {
			b.Fatal(err)
		}
	}
}
