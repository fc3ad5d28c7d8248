package demo

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// dev decodes a device as GET /api/v1/devices answers it.
func dev(t *testing.T, js string) device {
	t.Helper()
	var d device
	if err := json.Unmarshal([]byte(js), &d); err != nil {
		t.Fatalf("%s: %v", js, err)
	}
	return d
}

// TestNarratorDriftAndRollback feeds the narrator the device states a drifting v2 device goes
// through when its rollout rolls it back to v1, and checks the lines: drift on v2 is reported;
// the rollback ends the v2 series (it is not "drift cleared", whatever the last v2 window or the
// first v1 window says); drift that really clears on the running version is "drift cleared".
func TestNarratorDriftAndRollback(t *testing.T) {
	const (
		onV2Drift     = `{"id":"d1","online":true,"reported":{"models":{"anomaly":{"active":2,"state":"active"}}},"health":{"version":2,"rows":50,"dataset_drift":true,"drift_share":0.75}}`
		backOnV1      = `{"id":"d1","online":true,"reported":{"models":{"anomaly":{"active":1,"state":"rolled_back"}}},"health":{"version":2,"rows":50,"dataset_drift":true,"drift_share":0.75}}`
		lastV2Partial = `{"id":"d1","online":true,"reported":{"models":{"anomaly":{"active":1,"state":"rolled_back"}}},"health":{"version":2,"rows":12,"dataset_drift":false,"drift_share":0}}`
		firstV1Clean  = `{"id":"d1","online":true,"reported":{"models":{"anomaly":{"active":1,"state":"rolled_back"}}},"health":{"version":1,"rows":50,"dataset_drift":false,"drift_share":0}}`
		onV1Drift     = `{"id":"d1","online":true,"reported":{"models":{"anomaly":{"active":1,"state":"rolled_back"}}},"health":{"version":1,"rows":50,"dataset_drift":true,"drift_share":0.5}}`
		onV1Clean     = `{"id":"d1","online":true,"reported":{"models":{"anomaly":{"active":1,"state":"rolled_back"}}},"health":{"version":1,"rows":50,"dataset_drift":false,"drift_share":0.25}}`
	)
	var out bytes.Buffer
	n := newNarrator(nil, &out, "anomaly", time.Now())
	step := func(js string) string {
		t.Helper()
		out.Reset()
		n.device(dev(t, js))
		return out.String()
	}
	if s := step(onV2Drift); !strings.Contains(s, "reports dataset drift on anomaly v2") {
		t.Errorf("drift on v2: %q", s)
	}
	s := step(backOnV1)
	if strings.Contains(s, "drift cleared") {
		t.Errorf("rollback to v1 narrated as %q", s)
	}
	if !strings.Contains(s, "v2 drift series ended") || !strings.Contains(s, "now on anomaly v1") {
		t.Errorf("rollback to v1: %q, want the v2 drift series to end with the device now on v1", s)
	}
	for _, js := range []string{lastV2Partial, firstV1Clean} {
		if s := step(js); strings.Contains(s, "drift") {
			t.Errorf("after the rollback, %s narrated %q", js, s)
		}
	}
	if s := step(onV1Drift); !strings.Contains(s, "reports dataset drift on anomaly v1") {
		t.Errorf("drift on v1: %q", s)
	}
	if s := step(onV1Clean); !strings.Contains(s, "drift cleared (v1, drift share 0.25)") {
		t.Errorf("drift clearing on the running v1: %q", s)
	}
	if got := n.driftSeen(); len(got) != 1 || got[0] != "d1" {
		t.Errorf("driftSeen = %v", got)
	}
}

// TestNarratorRollbackBeforeHealthMoves: the rollback is seen only when a v2 window without drift
// arrives (the reported state and the health summary reach the hub in one telemetry batch). The
// old narration said "drift cleared (v2, drift share 0.00)" here.
func TestNarratorRollbackBeforeHealthMoves(t *testing.T) {
	var out bytes.Buffer
	n := newNarrator(nil, &out, "anomaly", time.Now())
	n.device(dev(t, `{"id":"d2","online":true,"reported":{"models":{"anomaly":{"active":2,"state":"active"}}},"health":{"version":2,"rows":50,"dataset_drift":true,"drift_share":0.75}}`))
	out.Reset()
	n.device(dev(t, `{"id":"d2","online":true,"reported":{"models":{"anomaly":{"active":1,"state":"rolled_back"}}},"health":{"version":2,"rows":7,"dataset_drift":false,"drift_share":0}}`))
	s := out.String()
	if strings.Contains(s, "drift cleared") || !strings.Contains(s, "v2 drift series ended") {
		t.Errorf("rollback seen with a clean v2 window: %q", s)
	}
}
