package pipeline

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/driftline/driftline/agent/quarantine"
	"github.com/driftline/driftline/shared/contract"
)

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	s := mustSchema(t, testContract)
	m := &model{}
	ref := make([]float64, 2000)
	for i := range ref {
		ref[i] = float64(i % 100)
	}
	m.set("pump", 1, []byte(testContract), refProfile(t, s, ref))
	h := newHarnessQ(t, Options{Contract: s, Window: contract.Window{Rows: 100, Seconds: 60}, Model: m, Registerer: reg},
		quarantine.Options{MaxRows: 3})
	// 100 rows: 95 valid, 5 out of range (quarantine holds 3: 2 evicted); the window is
	// shifted far from the reference.
	in := payload(0, 95, func(i int) float64 { return 120 + float64(i%10) })
	bad := payload(1000, 5, constant(500))
	for _, p := range [][]byte{in, bad} {
		if _, err := h.p.IngestPayload("mqtt", p); err != nil {
			t.Fatal(err)
		}
	}
	want := `
# HELP driftline_agent_quarantine_evicted_total Quarantined rows evicted for space, oldest first.
# TYPE driftline_agent_quarantine_evicted_total counter
driftline_agent_quarantine_evicted_total 2
# HELP driftline_agent_records_total Rows checked against the data contract, by result.
# TYPE driftline_agent_records_total counter
driftline_agent_records_total{result="invalid"} 5
driftline_agent_records_total{result="valid"} 95
# HELP driftline_agent_windows_total Windows closed and reported.
# TYPE driftline_agent_windows_total counter
driftline_agent_windows_total 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), MetricQuarantineEvicted, MetricRecords, MetricWindows); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(h.p.m.driftShare); got < 0.5 {
		t.Fatalf("drift share %v after a shifted window", got)
	}
	if n := testutil.CollectAndCount(h.p.m.windowSeconds); n != 1 {
		t.Fatalf("window histogram: %d series", n)
	}
	problems, err := testutil.GatherAndLint(reg)
	if err != nil || len(problems) > 0 {
		t.Fatalf("lint: %v %v", problems, err)
	}
	// A second pipeline on the same registry is refused, not silently unregistered.
	if _, err := New(Options{DeviceID: "d", Reporter: h.rec, Quarantine: h.q, Registerer: reg}); err == nil {
		t.Fatal("duplicate registration accepted")
	}
}

// TestQuarantineExpiresOnTick: with an age bound, Tick drops quarantined rows older than it and
// counts them, even when no new bad row arrives.
func TestQuarantineExpiresOnTick(t *testing.T) {
	reg := prometheus.NewRegistry()
	s := mustSchema(t, testContract)
	h := newHarnessQ(t, Options{Contract: s, Window: contract.Window{Rows: 100, Seconds: 60}, Registerer: reg},
		quarantine.Options{MaxAge: time.Hour})
	if _, err := h.p.IngestPayload("mqtt", payload(0, 4, constant(500))); err != nil {
		t.Fatal(err)
	}
	h.p.Flush()
	h.clock.Add(30 * time.Minute)
	h.p.Tick()
	if st := h.p.Stats(); st.QuarantineDepth != 4 {
		t.Fatalf("depth %d after 30 min, want 4", st.QuarantineDepth)
	}
	h.clock.Add(31 * time.Minute)
	h.p.Tick()
	if st := h.p.Stats(); st.QuarantineDepth != 0 {
		t.Fatalf("depth %d after 61 min, want 0", st.QuarantineDepth)
	}
	if got := testutil.ToFloat64(h.p.m.expired); got != 4 {
		t.Fatalf("%s = %v, want 4", MetricQuarantineExpired, got)
	}
}
