package fleet

import (
	"strings"
	"testing"

	"github.com/driftline/driftline/agent"
	"github.com/driftline/driftline/agent/reconcile"
)

func TestStageLine(t *testing.T) {
	h := agent.NewPullStages()
	if got := StageLine(h); got != "" {
		t.Fatalf("no pull yet: %q, want empty", got)
	}
	// 10 pulls notified within 0.05 s; 9 manifests between 1 and 2 s and one between 20 and 30 s.
	for i := 0; i < 10; i++ {
		h.WithLabelValues(reconcile.StageNotified).Observe(0.01)
	}
	for i := 0; i < 9; i++ {
		h.WithLabelValues(reconcile.StageManifest).Observe(1.5)
	}
	h.WithLabelValues(reconcile.StageManifest).Observe(25)
	got := StageLine(h)
	for _, want := range []string{"notified 10 0.0/0.0/0.1", "manifest 10 1.6/2.0/30"} {
		if !strings.Contains(got, want) {
			t.Errorf("StageLine = %q, want it to hold %q", got, want)
		}
	}
	if strings.Contains(got, "active") {
		t.Errorf("StageLine = %q names a stage no pull reached", got)
	}
}
