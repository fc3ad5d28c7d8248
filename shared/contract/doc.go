// Package contract is Driftline's data contract: a Frictionless Table Schema with "x-driftline"
// extensions (Parse, Schema, Field), and the row Validator that turns raw cells into typed
// Values and reports Violations. Readers of CSV, JSONL, JSON arrays and MQTT payloads live in
// the rows subpackage. See DESIGN.md for the row model and the choices the standard leaves open.
package contract
