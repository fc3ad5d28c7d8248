package webhook

import "github.com/prometheus/client_golang/prometheus"

// Metric names of the webhook dispatcher.
const (
	MetricAttempts = "driftline_hub_webhook_attempts_total"
)

type metrics struct {
	attempts *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricAttempts,
			Help: "Webhook delivery attempts recorded by this node, by outcome (delivered, retrying, failed)."}, []string{"outcome"}),
	}
	if reg != nil {
		reg.MustRegister(m.attempts)
	}
	return m
}
