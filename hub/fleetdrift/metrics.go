package fleetdrift

import "github.com/prometheus/client_golang/prometheus"

// Metric names of the fleet drift service.
const (
	MetricProfiles  = "driftline_hub_drift_profiles_total"
	MetricDevices   = "driftline_hub_drift_tracked_devices"
	MetricEvicted   = "driftline_hub_drift_devices_evicted_total"
	MetricWindows   = "driftline_hub_drift_windows_total"
	MetricPublished = "driftline_hub_drift_published_total"
)

type metrics struct {
	profiles  *prometheus.CounterVec
	devices   prometheus.Gauge
	evicted   prometheus.Counter
	windows   prometheus.Counter
	published prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		profiles: prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricProfiles,
			Help: "Device profile messages by result (ok, bad, unknown_device, unmatched, unmergeable, dropped)."}, []string{"result"}),
		devices: prometheus.NewGauge(prometheus.GaugeOpts{Name: MetricDevices, Help: "Devices whose drift this node tracks."}),
		evicted: prometheus.NewCounter(prometheus.CounterOpts{Name: MetricEvicted,
			Help: "Devices forgotten because more than the configured maximum were tracked."}),
		windows: prometheus.NewCounter(prometheus.CounterOpts{Name: MetricWindows, Help: "Fleet windows closed and scored."}),
		published: prometheus.NewCounter(prometheus.CounterOpts{Name: MetricPublished,
			Help: "Fleet drift messages published."}),
	}
	if reg != nil {
		reg.MustRegister(m.profiles, m.devices, m.evicted, m.windows, m.published)
	}
	return m
}
