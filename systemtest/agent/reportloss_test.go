package agent_test

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/driftline/driftline/agent"
	"github.com/driftline/driftline/agent/agenttest"
	"github.com/driftline/driftline/hub/broker/mosquittotest"
	"github.com/driftline/driftline/hub/node/nodetest"
	"github.com/driftline/driftline/internal/testhelp"
	"github.com/driftline/driftline/shared/wire"
)

// TestReportsSurviveBrokerOutage runs the hub and an agent on a Mosquitto with persistence on (as
// deploy/mosquitto configures it), kills the broker with SIGKILL while validation, prediction
// drift and performance reports flow,
// starts it again after the outage, and checks that the hub counted every report once: the rows
// on the device's runs edge are the rows sent, each report one window, the last one last. The
// agent reconnects first and drains its outbox while the hub may not be subscribed yet; a killed
// broker also loses what it acknowledged and had not saved.
func TestReportsSurviveBrokerOutage(t *testing.T) {
	t.Run("10s at 50 rows/s", func(t *testing.T) {
		reportOutage(t, 10*time.Second, 10, 5)
	})
	t.Run("60s at 5 rows/s", func(t *testing.T) {
		if os.Getenv("DRIFTLINE_INTEGRATION") != "1" {
			t.Skip("a 60 s outage: runs with DRIFTLINE_INTEGRATION=1")
		}
		reportOutage(t, 60*time.Second, 5, 1)
	})
}

// reportOutage sends perSec validation reports of rows rows each, 3 s before the broker dies,
// through an outage of the given length, and 3 s after the agent is back.
func reportOutage(t *testing.T, outage time.Duration, perSec, rows int) {
	m := &mosquitto{t: t, hubUser: "driftline-hub", hubPass: "hub-secret"}
	m.b = mosquittotest.StartWith(t, "the broker outage test", m.files(nil), m.hubUser, m.hubPass, mosquittotest.Options{Persistence: true})
	h := nodetest.Start(t, nodetest.Brokers(strings.Replace(m.url(), "tcp://", "tcp://"+m.hubUser+":"+m.hubPass+"@", 1)))
	const id = "dev-outage"
	tok := enroll(h, id)
	m.writeFiles(map[string]string{id: tok})
	m.b.WaitAccepts(id, tok)
	v, _ := h.PushModel("om", agenttest.RandomBytes(3, 64<<10), "", true)
	cfg := agenttest.Config(t, id, tok, []string{m.url()}, h.Keys())
	a := agenttest.Start(t, cfg, agent.Options{})
	assign(h, id, "om", v)
	waitActive(t, h, id, "om", v, "active")
	testhelp.WaitFor(t, 20*time.Second, "runs edge", func() bool { _, err := h.Reader().RunsEdge(id, "om", v); return err == nil })

	var (
		mu      sync.Mutex
		sent    int
		lastEnd int64
	)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(time.Second / time.Duration(perSec))
		defer tick.Stop()
		end := time.Now().UnixMilli()
		for i := int64(1); ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			end++ // one window per report, each ending later than the last
			b, err := wire.Encode(wire.Validation{Header: wire.Header{DeviceID: id, TS: end},
				Window: wire.Window{Index: i, WindowStart: end, WindowEnd: end}, ModelRef: wire.ModelRef{Model: "om", Version: v},
				Rows: int64(rows), Valid: int64(rows), ValidShare: 1})
			if err == nil {
				err = a.Report(wire.KindValidation, a.Topics().Validation(id), b)
			}
			// The output reports of the same window: their counts are deltas the hub adds up,
			// so each must arrive once too.
			if err == nil {
				b, err = wire.Encode(wire.PredictionDrift{Header: wire.Header{DeviceID: id, TS: end},
					Window: wire.Window{Index: i, WindowStart: end, WindowEnd: end}, ModelRef: wire.ModelRef{Model: "om", Version: v},
					Prediction: "y", Rows: int64(rows), Method: "psi", Score: 0.3, Threshold: 0.2, Drift: int(i % 2)})
			}
			if err == nil {
				err = a.Report(wire.KindPredictionDrift, a.Topics().PredictionDrift(id), b)
			}
			if err == nil {
				b, err = wire.Encode(wire.Performance{Header: wire.Header{DeviceID: id, TS: end},
					Window: wire.Window{Index: i, WindowStart: end, WindowEnd: end}, ModelRef: wire.ModelRef{Model: "om", Version: v},
					Task: "regression", Metric: "mae", Labels: int64(rows), Value: 1, Reference: 1, Relative: 1})
			}
			if err == nil {
				err = a.Report(wire.KindPerformance, a.Topics().Performance(id), b)
			}
			if err != nil {
				t.Errorf("send report %d: %v", i, err)
				return
			}
			mu.Lock()
			sent, lastEnd = int(i), end
			mu.Unlock()
		}
	}()
	time.Sleep(3 * time.Second) // reports flowing before the outage (load, not synchronisation)
	m.b.Kill()
	testhelp.WaitFor(t, 20*time.Second, "the agent sees the broker gone", func() bool { return !a.Connected() })
	time.Sleep(outage)
	m.b.Restart()
	testhelp.WaitFor(t, 60*time.Second, "the agent back", a.Connected)
	time.Sleep(3 * time.Second)
	close(stop)
	<-done

	mu.Lock()
	n, end := sent, lastEnd
	mu.Unlock()
	want := float64(n * rows)
	var attr map[string]any
	counted := false
	defer func() { // WaitFor failed: what the hub had counted by then
		if !counted {
			c, _ := h.Reader().ReportCursor(id)
			t.Logf("runs edge %v, cursor through %d, %d pending", attr, c.Through, len(c.Pending))
		}
	}()
	testhelp.WaitFor(t, 120*time.Second, fmt.Sprintf("the hub counting all %d reports of each kind (%v rows)", n, want), func() bool {
		e, err := h.Reader().RunsEdge(id, "om", v)
		attr = e.Attr
		return err == nil && attr["rows"] == want && attr["prediction_windows"] == float64(n) && attr["labels"] == want
	})
	counted = true
	if attr["windows"] != float64(n) || attr["last_report"] != fmt.Sprint(end) || attr["prediction_drift_windows"] != float64((n+1)/2) {
		t.Fatalf("the hub counted %v windows for %d reports, last %v (want %d), %v drifted prediction windows (want %d): %v",
			attr["windows"], n, attr["last_report"], end, attr["prediction_drift_windows"], (n+1)/2, attr)
	}
	c, err := h.Reader().ReportCursor(id)
	if err != nil || c.Through != uint64(3*n) || c.Gap() {
		t.Fatalf("report cursor %+v %v, want through %d (3 reports a window) without a gap", c, err, 3*n)
	}
	st := a.BufferStats()
	t.Logf("%d reports (%v rows) over a %v outage: all counted once; agent resends %d, buffer depth %d", n, want, outage, st.Resends, st.Depth)
}
