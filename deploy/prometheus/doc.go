// Package alerts holds no code: deploy/prometheus/alerts.yml is Driftline's Prometheus alerting
// rules, and alerts_test.go checks them with promtool (check rules, and the unit tests in
// alerts_test.yml) and against the metric names the hub and the agent export.
package alerts
