package pipeline

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Metric names the pipeline exports (registered through Options.Registerer).
const (
	// MetricRecords counts rows checked, by result (ResultValid, ResultInvalid).
	MetricRecords = "driftline_agent_records_total"
	// MetricWindows counts windows closed and reported.
	MetricWindows = "driftline_agent_windows_total"
	// MetricWindowSeconds is a histogram of the time to close one window (profile encoding,
	// drift, reports).
	MetricWindowSeconds = "driftline_agent_window_seconds"
	// MetricQuarantineEvicted counts quarantined rows evicted for space.
	MetricQuarantineEvicted = "driftline_agent_quarantine_evicted_total"
	// MetricWindowRowsLimit is the row bound of the window in force, labelled with where it came
	// from (source: WindowFromConfig, WindowFromContract, WindowFromDefault).
	MetricWindowRowsLimit = "driftline_agent_window_limit_rows"
	// MetricWindowSecondsLimit is the time bound of the window in force, in seconds, labelled
	// like MetricWindowRowsLimit.
	MetricWindowSecondsLimit = "driftline_agent_window_limit_seconds"
	// MetricQuarantineExpired counts quarantined rows dropped for age (quarantine max_age).
	MetricQuarantineExpired = "driftline_agent_quarantine_expired_total"
	// MetricDriftShare is the drift share of the last window scored against a reference.
	MetricDriftShare = "driftline_agent_drift_share"
)

// Values of MetricRecords' result label.
const (
	ResultValid   = "valid"
	ResultInvalid = "invalid"
)

type metrics struct {
	valid, invalid prometheus.Counter
	windows        prometheus.Counter
	windowSeconds  prometheus.Histogram
	evicted        prometheus.Counter
	expired        prometheus.Counter
	driftShare     prometheus.Gauge
	// limitRows and limitSeconds hold one series each: the window in force.
	limitRows, limitSeconds *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	records := prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricRecords,
		Help: "Rows checked against the data contract, by result."}, []string{"result"})
	m := &metrics{
		valid:   records.WithLabelValues(ResultValid),
		invalid: records.WithLabelValues(ResultInvalid),
		windows: prometheus.NewCounter(prometheus.CounterOpts{Name: MetricWindows,
			Help: "Windows closed and reported."}),
		windowSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: MetricWindowSeconds,
			Help:    "Time to close one window: profile encoding, drift against the reference, reports.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 8)}),
		evicted: prometheus.NewCounter(prometheus.CounterOpts{Name: MetricQuarantineEvicted,
			Help: "Quarantined rows evicted for space, oldest first."}),
		expired: prometheus.NewCounter(prometheus.CounterOpts{Name: MetricQuarantineExpired,
			Help: "Quarantined rows dropped for age (older than the quarantine's max_age)."}),
		driftShare: prometheus.NewGauge(prometheus.GaugeOpts{Name: MetricDriftShare,
			Help: "Share of drifted features in the last window scored against a reference profile."}),
		limitRows: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: MetricWindowRowsLimit,
			Help: "Rows after which the window in force closes, by where that bound came from (config, contract, default)."}, []string{"source"}),
		limitSeconds: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: MetricWindowSecondsLimit,
			Help: "Seconds after which the window in force closes, by where that bound came from (config, contract, default)."}, []string{"source"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{records, m.windows, m.windowSeconds, m.evicted, m.expired, m.driftShare, m.limitRows, m.limitSeconds} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register pipeline metrics: %w", err)
		}
	}
	return m, nil
}

// setWindow makes the window gauges show w (one series each).
func (m *metrics) setWindow(w ResolvedWindow) {
	m.limitRows.Reset()
	m.limitRows.WithLabelValues(w.RowsSource).Set(float64(w.Rows))
	m.limitSeconds.Reset()
	m.limitSeconds.WithLabelValues(w.SecondsSource).Set(w.Seconds)
}
