package state

import (
	"fmt"
	"testing"

	"github.com/driftline/driftline/hub/command"
)

func TestReportCursorAccept(t *testing.T) {
	var c ReportCursor
	steps := []struct {
		epoch, seq, first uint64
		news              bool
		want              string
	}{
		{5, 1, 1, true, "5:1[]"},
		{5, 1, 1, false, "5:1[]"}, // a repeat
		{5, 3, 1, true, "5:1[3]"}, // a hole at 2
		{5, 4, 1, true, "5:1[3 4]"},
		{5, 3, 1, false, "5:1[3 4]"},
		{5, 2, 1, true, "5:4[]"},  // the hole filled
		{4, 9, 1, false, "5:4[]"}, // an older epoch: a redelivery
		{5, 9, 7, true, "5:6[9]"}, // the agent dropped 5 and 6: do not wait for them
		{6, 3, 2, true, "6:1[3]"}, // a new epoch starts over
		{6, 2, 2, true, "6:3[]"},
	}
	for i, s := range steps {
		news := c.accept(s.epoch, s.seq, s.first)
		if got := fmt.Sprintf("%d:%d%v", c.Epoch, c.Through, c.Above); news != s.news || got != s.want {
			t.Fatalf("step %d (%d,%d,%d): news %v cursor %s, want %v %s", i, s.epoch, s.seq, s.first, news, got, s.news, s.want)
		}
	}
	c = ReportCursor{Epoch: 1}
	for i := uint64(0); i < MaxReportsAbove; i++ {
		c.accept(1, 3+i, 1)
	}
	if c.accept(1, 10_000, 1) || len(c.Above) != MaxReportsAbove {
		t.Fatalf("cursor past its bound: %d above", len(c.Above))
	}
}

// TestNumberedReportsCountOnce applies numbered reports as three hub nodes would forward them:
// repeated, out of order, in several batches. Each counts once on the runs edge.
func TestNumberedReportsCountOnce(t *testing.T) {
	h := newHarness(t)
	seedRegistry(h)
	h.must(command.TypeModelVersionApprove, "bob", ModelVersionApprove{Model: "m", Version: 1, Signature: Signature{KeyID: "k", Sig: "s"}})
	h.must(command.TypeDeviceCreate, "a", DeviceCreate{ID: "d1", TokenHash: "h1"})
	one := 1
	h.must(command.TypeDeviceTelemetry, "hub", DeviceTelemetry{Devices: []DeviceObservation{
		{ID: "d1", Reported: &Reported{Rev: 1, Models: map[string]ReportedModel{"m": {Active: &one, State: "active"}}}},
	}})
	rep := func(seq uint64) NumberedReport {
		return NumberedReport{Epoch: 7, Seq: seq, First: 1, Health: HealthSummary{Model: "m", Version: 1, Rows: 10, Invalid: 1, At: int64(seq) * 1000}}
	}
	for _, batch := range [][]uint64{{1, 2, 4}, {2, 3}, {4, 5, 1}, {5}} {
		var rs []NumberedReport
		for _, s := range batch {
			rs = append(rs, rep(s))
		}
		h.must(command.TypeDeviceTelemetry, "hub", DeviceTelemetry{Devices: []DeviceObservation{{ID: "d1", Reports: rs}}})
	}
	r := Reader{DB: h.db}
	edge, err := r.RunsEdge("d1", "m", 1)
	if err != nil || edge.Attr["rows"] != float64(50) || edge.Attr["invalid_rows"] != float64(5) || edge.Attr["windows"] != float64(5) {
		t.Fatalf("runs edge after 5 reports sent 9 times: %+v %v", edge.Attr, err)
	}
	c, err := r.ReportCursor("d1")
	if err != nil || c.Epoch != 7 || c.Through != 5 || c.Gap() {
		t.Fatalf("cursor %+v %v", c, err)
	}
	h.must(command.TypeDeviceDelete, "a", DeviceDelete{ID: "d1"})
	if c, _ := r.ReportCursor("d1"); c.Epoch != 0 {
		t.Fatalf("cursor of a deleted device: %+v", c)
	}
}
