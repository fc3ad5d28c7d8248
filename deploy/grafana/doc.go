// Package grafana holds Driftline's Grafana dashboards (dashboards/*.json: one for Prometheus,
// hub and agents; one for the Grafana MQTT data source, live device telemetry) and their
// provisioning files. It has no code: its test checks that every metric a dashboard queries is
// one the Go code exports and every MQTT topic one that shared/wire defines.
package grafana
