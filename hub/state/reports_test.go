package state

import (
	"fmt"
	"testing"

	"github.com/driftline/driftline/hub/command"
)

func TestReportCursorOffer(t *testing.T) {
	var c ReportCursor
	steps := []struct {
		epoch, seq, first uint64
		applied           string // seqs made applicable, in order
		want              string // cursor after
	}{
		{5, 1, 1, "[1]", "5:1[]"},
		{5, 1, 1, "[]", "5:1[]"},  // a repeat
		{5, 3, 1, "[]", "5:1[3]"}, // a hole at 2: held
		{5, 4, 1, "[]", "5:1[3 4]"},
		{5, 3, 1, "[]", "5:1[3 4]"},
		{5, 2, 1, "[2 3 4]", "5:4[]"}, // the hole filled: applied in order
		{4, 9, 1, "[]", "5:4[]"},      // an older epoch: a redelivery
		{5, 7, 5, "[]", "5:4[7]"},
		{5, 9, 7, "[7]", "5:7[9]"}, // the agent dropped 5 and 6: stop waiting for them
		{6, 3, 2, "[]", "6:1[3]"},  // a new epoch starts over
		{6, 2, 2, "[2 3]", "6:3[]"},
	}
	for i, s := range steps {
		got := c.offer(NumberedReport{Epoch: s.epoch, Seq: s.seq, First: s.first})
		var seqs []uint64
		for _, r := range got {
			seqs = append(seqs, r.Seq)
		}
		var pend []uint64
		for _, r := range c.Pending {
			pend = append(pend, r.Seq)
		}
		if a, cur := fmt.Sprint(seqs), fmt.Sprintf("%d:%d%v", c.Epoch, c.Through, pend); (a != s.applied && !(s.applied == "[]" && a == "[]")) || cur != s.want {
			t.Fatalf("step %d (%d,%d,%d): applied %s cursor %s, want %s %s", i, s.epoch, s.seq, s.first, a, cur, s.applied, s.want)
		}
	}
	c = ReportCursor{Epoch: 1}
	for i := uint64(0); i < MaxReportsPending; i++ {
		c.offer(NumberedReport{Epoch: 1, Seq: 3 + i, First: 1})
	}
	if got := c.offer(NumberedReport{Epoch: 1, Seq: 10_000, First: 1}); len(got) != 0 || len(c.Pending) != MaxReportsPending {
		t.Fatalf("cursor past its bound: %d pending", len(c.Pending))
	}
}

// TestNumberedReportsCountOnce applies numbered reports as three hub nodes would forward them:
// repeated, out of order, in several batches. Each counts once on the runs edge, in sequence
// order (the newest window is the last one applied).
func TestNumberedReportsCountOnce(t *testing.T) {
	h := newReportsHarness(t)
	rep := func(seq uint64) NumberedReport {
		return NumberedReport{Epoch: 7, Seq: seq, First: 1, Health: HealthSummary{Model: "m", Version: 1, Rows: 10, Invalid: 1, At: int64(seq) * 1000}}
	}
	sendReportBatches(h, rep, [][]uint64{{1, 2, 4}, {2, 3}, {4, 6, 1}, {5}})
	r := Reader{DB: h.db}
	edge, err := r.RunsEdge("d1", "m", 1)
	if err != nil || edge.Attr["rows"] != float64(60) || edge.Attr["invalid_rows"] != float64(6) || edge.Attr["windows"] != float64(6) || edge.Attr["last_report"] != "6000" {
		t.Fatalf("runs edge after 6 reports sent 9 times, out of order: %+v %v", edge.Attr, err)
	}
	c, err := r.ReportCursor("d1")
	if err != nil || c.Epoch != 7 || c.Through != 6 || c.Gap() {
		t.Fatalf("cursor %+v %v", c, err)
	}
	h.must(command.TypeDeviceDelete, "a", DeviceDelete{ID: "d1"})
	if c, _ := r.ReportCursor("d1"); c.Epoch != 0 {
		t.Fatalf("cursor of a deleted device: %+v", c)
	}
}

// TestNumberedOutputReportsCountOnce: numbered prediction drift and performance reports (their
// counts are deltas) interleaved with validation reports in one sequence are added once each,
// however often and in whatever order they arrive, and leave the health summary alone.
func TestNumberedOutputReportsCountOnce(t *testing.T) {
	h := newReportsHarness(t)
	// Seq 1, 4: validation; 2, 5: prediction drift (5 drifted); 3, 6: performance of 8 labels.
	rep := func(seq uint64) NumberedReport {
		at := int64(seq) * 1000
		r := NumberedReport{Epoch: 7, Seq: seq, First: 1}
		switch seq % 3 {
		case 1:
			r.Health = HealthSummary{Model: "m", Version: 1, Rows: 10, At: at}
		case 2:
			r.Outputs = &OutputHealth{Model: "m", Version: 1, At: at, PredictionWindows: 1, PredictionDrift: seq == 5}
			if seq == 5 {
				r.Outputs.PredictionDrifted = 1
			}
		case 0:
			r.Outputs = &OutputHealth{Model: "m", Version: 1, At: at, Labels: 8, RelativeSum: 4, Relative: 0.5, Metric: "mae", Value: 2}
		}
		return r
	}
	sendReportBatches(h, rep, [][]uint64{{2, 3, 5}, {1, 2}, {6, 3, 1, 4}, {5, 6}})
	r := Reader{DB: h.db}
	edge, err := r.RunsEdge("d1", "m", 1)
	a := edge.Attr
	if err != nil || a["rows"] != float64(20) || a["windows"] != float64(2) || a["prediction_windows"] != float64(2) ||
		a["prediction_drift_windows"] != float64(1) || a["labels"] != float64(16) || a["relative_sum"] != float64(8) {
		t.Fatalf("runs edge after 6 reports sent 11 times, out of order: %+v %v", a, err)
	}
	d, err := r.Device("d1")
	if err != nil || d.Health == nil || d.Health.Rows != 10 || d.Health.At != 4000 {
		t.Fatalf("health summary %+v %v: output reports must not replace it", d.Health, err)
	}
	if c, err := r.ReportCursor("d1"); err != nil || c.Through != 6 || c.Gap() {
		t.Fatalf("cursor %+v %v", c, err)
	}
}

// newReportsHarness returns a harness with the seeded registry, version 1 of "m" approved and
// device d1 reporting it active: the state numbered reports are applied to.
func newReportsHarness(t *testing.T) *harness {
	h := newHarness(t)
	seedRegistry(h)
	h.must(command.TypeModelVersionApprove, "bob", ModelVersionApprove{Model: "m", Version: 1, Signature: Signature{KeyID: "k", Sig: "s"}})
	h.must(command.TypeDeviceCreate, "a", DeviceCreate{ID: "d1", TokenHash: "h1"})
	one := 1
	h.must(command.TypeDeviceTelemetry, "hub", DeviceTelemetry{Devices: []DeviceObservation{
		{ID: "d1", Reported: &Reported{Rev: 1, Models: map[string]ReportedModel{"m": {Active: &one, State: "active"}}}},
	}})
	return h
}

// sendReportBatches applies d1's numbered reports rep(seq), one telemetry command per batch.
func sendReportBatches(h *harness, rep func(uint64) NumberedReport, batches [][]uint64) {
	for _, batch := range batches {
		var rs []NumberedReport
		for _, s := range batch {
			rs = append(rs, rep(s))
		}
		h.must(command.TypeDeviceTelemetry, "hub", DeviceTelemetry{Devices: []DeviceObservation{{ID: "d1", Reports: rs}}})
	}
}
