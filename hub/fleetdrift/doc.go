// Package fleetdrift is the hub's fleet drift service: it receives the binary window profiles
// devices publish, merges them per model version and time window into a fleet profile, scores
// the fleet and each device against the reference profile of the version's training dataset,
// keeps a bounded time series, publishes PREFIX/fleet/drift/{model}, and serves
// GET /api/v1/drift and GET /api/v1/devices/{id}/drift. See DESIGN.md.
package fleetdrift
