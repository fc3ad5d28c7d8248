package fleet

import (
	"fmt"
	"math"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/driftline/driftline/agent/reconcile"
)

// StageLine summarises the agents' pull stages (agent.MetricPullStages, one histogram for the
// fleet): for each stage reached, how many pulls reached it and the 50th and 90th percentiles
// and the upper bound of the last bucket holding one, in seconds from the desired state taken
// up, e.g. "pull stages since desired (n p50/p90/max s): notified 1000 0.3/1.1/2, ...". The
// percentiles are interpolated within the histogram's buckets. "" when no pull reached a stage.
func StageLine(h *prometheus.HistogramVec) string {
	var parts []string
	for _, st := range reconcile.Stages {
		o, err := h.GetMetricWithLabelValues(st)
		if err != nil {
			continue
		}
		var m dto.Metric
		if err := o.(prometheus.Metric).Write(&m); err != nil || m.Histogram == nil || m.Histogram.GetSampleCount() == 0 {
			continue
		}
		hg := m.Histogram
		parts = append(parts, fmt.Sprintf("%s %d %s/%s/%s", st, hg.GetSampleCount(),
			secs(quantile(hg, 0.5)), secs(quantile(hg, 0.9)), secs(quantile(hg, 1))))
	}
	if len(parts) == 0 {
		return ""
	}
	return "pull stages since desired (n p50/p90/max s): " + strings.Join(parts, ", ")
}

// quantile interpolates the q-quantile of a histogram linearly within its bucket; q = 1 gives
// the upper bound of the last bucket that holds an observation (+Inf past the last bound).
func quantile(h *dto.Histogram, q float64) float64 {
	n := float64(h.GetSampleCount())
	rank := q * n
	lower, below := 0.0, 0.0
	for _, b := range h.GetBucket() {
		c := float64(b.GetCumulativeCount())
		if c >= rank && c > below {
			if q >= 1 {
				return b.GetUpperBound()
			}
			return lower + (b.GetUpperBound()-lower)*(rank-below)/(c-below)
		}
		lower, below = b.GetUpperBound(), c
	}
	return math.Inf(1)
}

func secs(v float64) string {
	switch {
	case math.IsInf(v, 1):
		return "inf"
	case v < 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.0f", v)
	}
}
