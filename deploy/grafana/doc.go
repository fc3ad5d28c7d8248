// Package grafana holds Driftline's Grafana dashboards (dashboards/*.json: one for Prometheus,
// hub and agents; one for the Grafana MQTT data source, live device telemetry) and their
// provisioning files. It has no code. Its tests check the dashboards and docs/telemetry.md
// against the code: every metric a dashboard queries or the page documents is one the Go code
// exports (and the page documents all of them), every PromQL expression parses, every MQTT topic
// is one shared/wire defines, and every example payload decodes and validates as its wire type.
package grafana
