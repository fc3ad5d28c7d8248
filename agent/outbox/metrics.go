package outbox

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Metric names the agent exports for its report buffer.
const (
	// MetricDropped counts reports dropped from the buffer, by reason (size, age, corrupt).
	MetricDropped = "driftline_agent_buffer_dropped_total"
	// MetricDepth is the number of reports waiting in the buffer.
	MetricDepth = "driftline_agent_buffer_depth"
	// MetricBytes is the stored size of the reports waiting in the buffer.
	MetricBytes = "driftline_agent_buffer_bytes"
)

// Drop reasons, the values of MetricDropped's reason label.
const (
	ReasonSize    = "size"
	ReasonAge     = "age"
	ReasonCorrupt = "corrupt"
)

type metrics struct {
	dropped *prometheus.CounterVec
	depth   prometheus.Gauge
	bytes   prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricDropped,
			Help: "Reports dropped from the store-and-forward buffer, by reason (size, age, corrupt).",
		}, []string{"reason"}),
		depth: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: MetricDepth,
			Help: "Reports waiting in the store-and-forward buffer.",
		}),
		bytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: MetricBytes,
			Help: "Stored bytes of the reports waiting in the store-and-forward buffer.",
		}),
	}
	for _, r := range []string{ReasonSize, ReasonAge, ReasonCorrupt} {
		m.dropped.WithLabelValues(r) // export zeros from the start
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.dropped, m.depth, m.bytes} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return nil, fmt.Errorf("register outbox metrics (use prometheus.WrapRegistererWith per agent in one process): %w", err)
			}
			return nil, fmt.Errorf("register outbox metrics: %w", err)
		}
	}
	return m, nil
}
