package fleetdrift

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// Metric names of the fleet drift service.
const (
	MetricProfiles  = "driftline_hub_drift_profiles_total"
	MetricDevices   = "driftline_hub_drift_tracked_devices"
	MetricEvicted   = "driftline_hub_drift_devices_evicted_total"
	MetricWindows   = "driftline_hub_drift_windows_total"
	MetricPublished = "driftline_hub_drift_published_total"

	// The same for the fleet view of predictions (Config.Predictions).
	MetricPredictionProfiles  = "driftline_hub_prediction_drift_profiles_total"
	MetricPredictionDevices   = "driftline_hub_prediction_drift_tracked_devices"
	MetricPredictionEvicted   = "driftline_hub_prediction_drift_devices_evicted_total"
	MetricPredictionWindows   = "driftline_hub_prediction_drift_windows_total"
	MetricPredictionPublished = "driftline_hub_prediction_drift_published_total"
)

type metrics struct {
	profiles  *prometheus.CounterVec
	devices   prometheus.Gauge
	evicted   prometheus.Counter
	windows   prometheus.Counter
	published prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, predictions bool) *metrics {
	names := [5]string{MetricProfiles, MetricDevices, MetricEvicted, MetricWindows, MetricPublished}
	what := "Device profile"
	if predictions {
		names = [5]string{MetricPredictionProfiles, MetricPredictionDevices, MetricPredictionEvicted, MetricPredictionWindows, MetricPredictionPublished}
		what = "Device prediction profile"
	}
	m := &metrics{
		profiles: prometheus.NewCounterVec(prometheus.CounterOpts{Name: names[0],
			Help: what + " messages by result (ok, bad, unknown_device, unmatched, unmergeable, dropped)."}, []string{"result"}),
		devices: prometheus.NewGauge(prometheus.GaugeOpts{Name: names[1], Help: "Devices whose " + strings.ToLower(what) + "s this node tracks."}),
		evicted: prometheus.NewCounter(prometheus.CounterOpts{Name: names[2],
			Help: "Devices forgotten because more than the configured maximum were tracked."}),
		windows: prometheus.NewCounter(prometheus.CounterOpts{Name: names[3], Help: "Fleet windows closed and scored."}),
		published: prometheus.NewCounter(prometheus.CounterOpts{Name: names[4],
			Help: "Fleet drift messages published."}),
	}
	if reg != nil {
		reg.MustRegister(m.profiles, m.devices, m.evicted, m.windows, m.published)
	}
	return m
}
