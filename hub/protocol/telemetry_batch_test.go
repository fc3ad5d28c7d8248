package protocol

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/driftline/driftline/hub/command"
	"github.com/driftline/driftline/hub/keys"
	"github.com/driftline/driftline/hub/state"
	"github.com/driftline/driftline/hub/state/statetest"
	"github.com/driftline/driftline/shared/wire"
)

// TestTelemetryBatchFitsTransactions: a second's telemetry of more devices than one badger
// transaction holds (every device of a big fleet coming online at once) is applied, in several
// commands. As one command it was refused as too big, merged back, and never applied: at 100,000
// devices (firmware-sim/loadgen, issue 18) no device's status reached the state again.
func TestTelemetryBatchFitsTransactions(t *testing.T) {
	st := statetest.New(t) // the test database holds ~4.8 MB per transaction
	const n = 20000
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("dev-%06d", i)
		st.Must(t, command.TypeDeviceCreate, state.DeviceCreate{ID: ids[i], TokenHash: "h"})
	}
	s, err := Start(Config{Transport: &recorder{}, DB: st.DB, Changes: st.Changes, Reader: st.Reader(), Keys: &keys.Source{R: st.Reader()},
		Apply:    func(ctx context.Context, env command.Envelope) error { _, err := st.Apply(ctx, env); return err },
		Interval: time.Hour, // flushed by the test
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	now := time.Now().UnixMilli()
	for _, id := range ids {
		b, err := wire.Encode(wire.Heartbeat{Header: wire.Header{DeviceID: id, TS: now}, AgentVersion: "1.0.0", ActiveModels: []string{"m@1"}, RSS: 1 << 20})
		if err != nil {
			t.Fatal(err)
		}
		if !s.tele.observe(wire.KindHeartbeat, id, b) {
			t.Fatal("heartbeat refused")
		}
		// A numbered validation report: the device's status, its report cursor and its runs edge.
		v := wire.Validation{Header: wire.Header{DeviceID: id, TS: now}, Window: wire.Window{Index: 1, WindowStart: now - 60000, WindowEnd: now},
			ModelRef: wire.ModelRef{Model: "m", Version: 1}, ReportSeq: wire.ReportSeq{Seq: 1, Epoch: 1, First: 1}, Rows: 60, Valid: 60, ValidShare: 1}
		if b, err = wire.Encode(v); err != nil {
			t.Fatal(err)
		}
		if !s.tele.observe(wire.KindValidation, id, b) {
			t.Fatal("validation refused")
		}
	}
	s.tele.flush(context.Background())
	seen := 0
	for _, id := range ids {
		d, err := st.Reader().Device(id)
		if err != nil {
			t.Fatal(err)
		}
		if d.LastSeen != 0 {
			seen++
		}
		if c, err := st.Reader().ReportCursor(id); err != nil || c.Through != 1 {
			t.Fatalf("report cursor of %s: %+v %v", id, c, err)
		}
	}
	if seen != n {
		t.Fatalf("%d of %d devices' heartbeats applied", seen, n)
	}
}
