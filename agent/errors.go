package agent

import "errors"

// Errors of the agent runtime. Returned errors wrap one of these with context.
var (
	// ErrNotConnected is returned by a publish while the MQTT connection is down; the outbox
	// keeps the report and tries again.
	ErrNotConnected = errors.New("agent: not connected to a broker")
	// ErrAckTimeout is returned when the broker did not acknowledge a publish in time.
	ErrAckTimeout = errors.New("agent: publish not acknowledged in time")
	// ErrReconnected is returned when the connection changed while a publish waited for its
	// acknowledgement, so a completed token proves nothing (PITFALLS: paho); it is sent again.
	ErrReconnected = errors.New("agent: connection changed during publish")
)
