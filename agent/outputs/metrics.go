package outputs

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Metric names of the outputs tracker.
const (
	MetricRows            = "driftline_agent_output_rows_total"
	MetricJoined          = "driftline_agent_labels_joined_total"
	MetricWindows         = "driftline_agent_output_windows_total"
	MetricPredictionDrift = "driftline_agent_prediction_drift"
	MetricRelative        = "driftline_agent_performance_relative"
)

type metrics struct {
	rows     *prometheus.CounterVec
	joined   prometheus.Counter
	windows  prometheus.Counter
	drift    prometheus.Gauge
	relative prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		rows: prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricRows,
			Help: "Prediction and label rows by kind (predictions, labels) and result (valid, invalid)."}, []string{"kind", "result"}),
		joined:  prometheus.NewCounter(prometheus.CounterOpts{Name: MetricJoined, Help: "Labels joined to their prediction and scored."}),
		windows: prometheus.NewCounter(prometheus.CounterOpts{Name: MetricWindows, Help: "Output windows closed."}),
		drift: prometheus.NewGauge(prometheus.GaugeOpts{Name: MetricPredictionDrift,
			Help: "1 when the last scored window's predictions drifted from the output reference, else 0."}),
		relative: prometheus.NewGauge(prometheus.GaugeOpts{Name: MetricRelative,
			Help: "The last window's performance relative to the reference (1: as good; below 1 worse)."}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.rows, m.joined, m.windows, m.drift, m.relative} {
			if err := reg.Register(c); err != nil {
				var are prometheus.AlreadyRegisteredError
				if !errors.As(err, &are) {
					return nil, err
				}
			}
		}
	}
	return m, nil
}
