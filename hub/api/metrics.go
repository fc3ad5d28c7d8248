package api

import (
	"strconv"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
)

// Metric names of the HTTP API.
const (
	MetricRequests       = "driftline_hub_api_requests_total"
	MetricRequestSeconds = "driftline_hub_api_request_seconds"
	// MetricSigningFailures counts approvals this node could not sign, by reason (no_key).
	MetricSigningFailures = "driftline_hub_signing_failures_total"
	// MetricForwarded counts a follower's calls to the leader by call (apply, read_index,
	// member, relay) and outcome (ok, refused, unavailable, unauthorized, error).
	MetricForwarded = "driftline_hub_forwarded_total"
)

type apiMetrics struct {
	requests   *prometheus.CounterVec
	latency    *prometheus.HistogramVec
	signFailed *prometheus.CounterVec
	forwarded  *prometheus.CounterVec
}

func newAPIMetrics(reg prometheus.Registerer) *apiMetrics {
	m := &apiMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricRequests, Help: "HTTP API requests by route, method and status code.",
		}, []string{"route", "method", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: MetricRequestSeconds, Help: "HTTP API request latency by route and method.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2.5, 12),
		}, []string{"route", "method"}),
		signFailed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricSigningFailures, Help: "Approvals this node could not sign, by reason (no_key).",
		}, []string{"reason"}),
		forwarded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricForwarded, Help: "A follower's calls to the leader over the cluster client, by call and outcome.",
		}, []string{"call", "outcome"}),
	}
	m.signFailed.WithLabelValues("no_key")
	if reg != nil {
		reg.MustRegister(m.requests, m.latency, m.signFailed, m.forwarded)
	}
	return m
}

func (m *apiMetrics) middleware(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		err := next(c)
		route := c.Path()
		if route == "" {
			route = "unmatched"
		}
		code := c.Response().Status
		if err != nil {
			code = toProblem(err).Status
		}
		m.requests.WithLabelValues(route, c.Request().Method, strconv.Itoa(code)).Inc()
		m.latency.WithLabelValues(route, c.Request().Method).Observe(time.Since(start).Seconds())
		return err
	}
}
