package node

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/driftline/driftline/hub/state"
)

// Metric names of the fleet gauges, read from the replicated state at scrape time. Every node
// reports the same values (the state is replicated): alert on max() over the hub's instances.
const (
	metricDevices         = "driftline_hub_devices"
	metricDevicesDrifting = "driftline_hub_devices_drifting"
	metricRollouts        = "driftline_hub_rollouts"
	metricRolloutsGated   = "driftline_hub_rollouts_paused_by_gate"
)

// fleetCollector counts devices and rollouts, walking the state at most every 30 s.
type fleetCollector struct {
	read                               state.Reader
	devices, drifting, rollouts, gated *prometheus.Desc

	mu   sync.Mutex
	at   time.Time
	last fleetCounts
}

type fleetCounts struct {
	online, offline, drifting int
	rollouts                  map[string]int
	gated                     int
	ok                        bool
}

func newFleetCollector(r state.Reader) *fleetCollector {
	return &fleetCollector{read: r,
		devices:  prometheus.NewDesc(metricDevices, "Registered devices by connection state (online, offline).", []string{"state"}, nil),
		drifting: prometheus.NewDesc(metricDevicesDrifting, "Devices whose latest health summary reports dataset drift.", nil, nil),
		rollouts: prometheus.NewDesc(metricRollouts, "Rollouts by state (running, paused, completed, aborted, rolled_back).", []string{"state"}, nil),
		gated: prometheus.NewDesc(metricRolloutsGated,
			"Paused rollouts with a failed gate (the controller paused them; a pause by hand has no failed gate).", nil, nil),
	}
}

func (c *fleetCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.devices
	ch <- c.drifting
	ch <- c.rollouts
	ch <- c.gated
}

func (c *fleetCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	if time.Since(c.at) > 30*time.Second || !c.last.ok {
		c.last, c.at = c.count(), time.Now()
	}
	f := c.last
	c.mu.Unlock()
	if !f.ok {
		return
	}
	ch <- prometheus.MustNewConstMetric(c.devices, prometheus.GaugeValue, float64(f.online), "online")
	ch <- prometheus.MustNewConstMetric(c.devices, prometheus.GaugeValue, float64(f.offline), "offline")
	ch <- prometheus.MustNewConstMetric(c.drifting, prometheus.GaugeValue, float64(f.drifting))
	for _, s := range []string{state.RolloutRunning, state.RolloutPaused, state.RolloutCompleted, state.RolloutAborted, state.RolloutRolledBack} {
		ch <- prometheus.MustNewConstMetric(c.rollouts, prometheus.GaugeValue, float64(f.rollouts[s]), s)
	}
	ch <- prometheus.MustNewConstMetric(c.gated, prometheus.GaugeValue, float64(f.gated))
}

// count walks devices and rollouts page by page; ok is false when the state could not be read.
func (c *fleetCollector) count() fleetCounts {
	f := fleetCounts{rollouts: map[string]int{}}
	cursor := ""
	for {
		p, err := c.read.Devices(nil, cursor, 1000)
		if err != nil {
			return f
		}
		for _, d := range p.Items {
			if d.Online {
				f.online++
			} else {
				f.offline++
			}
			if d.Health != nil && d.Health.DatasetDrift {
				f.drifting++
			}
		}
		if p.NextCursor == nil {
			break
		}
		cursor = *p.NextCursor
	}
	cursor = ""
	for {
		p, err := c.read.Rollouts(cursor, 1000)
		if err != nil {
			return f
		}
		for _, r := range p.Items {
			f.rollouts[r.State]++
			if r.State == state.RolloutPaused && gateFailed(r) {
				f.gated++
			}
		}
		if p.NextCursor == nil {
			break
		}
		cursor = *p.NextCursor
	}
	f.ok = true
	return f
}

// gateFailed reports whether a gate of the rollout's current wave failed.
func gateFailed(r state.Rollout) bool {
	for _, g := range r.GateValues {
		if g.Failed {
			return true
		}
	}
	return false
}
