// Package wire is Driftline's MQTT protocol (SPEC section 3), shared by the agent and the hub:
// the topic tree (Topics, Kind, Parse), the JSON payloads with validating decoders (Status,
// Heartbeat, Validation, Drift, DriftFeature, Desired, Reported, FetchRequest, FleetRollout,
// FleetDrift), the binary chunk frames that carry artifact chunks and other fetched objects
// (EncodeFrame, DecodeFrame, DataFrames, Object), and the per-device rollout states.
//
// Every decoder takes bytes from the network: it bounds the input size, never panics, and
// returns an error wrapping ErrBadPayload or ErrBadFrame that names the field at fault.
// See DESIGN.md for the topic table, QoS and retain rules and the frame layout.
package wire
