package wire

import "errors"

// Errors returned by this package. Each returned error wraps one of these with the field or
// offset at fault; callers test them with errors.Is.
var (
	// ErrForeignTopic means a topic is not under the configured prefix.
	ErrForeignTopic = errors.New("wire: topic outside the prefix")
	// ErrUnknownTopic means a topic is under the prefix but matches no topic of the protocol.
	ErrUnknownTopic = errors.New("wire: unknown topic")
	// ErrBadName means a device id, feature, model, rollout or request id is empty, too long,
	// not UTF-8, or holds a character MQTT topics or the protocol forbid.
	ErrBadName = errors.New("wire: bad name")
	// ErrBadPrefix means a topic prefix is empty, has empty levels or holds a wildcard.
	ErrBadPrefix = errors.New("wire: bad topic prefix")
	// ErrBadPayload means a JSON payload is malformed, too large, or fails validation
	// (a required field missing, a value out of range).
	ErrBadPayload = errors.New("wire: invalid payload")
	// ErrDeviceMismatch means a payload's device_id differs from the device in its topic.
	ErrDeviceMismatch = errors.New("wire: payload device_id does not match topic")
	// ErrBadFrame means a chunk frame is malformed: wrong magic or version, unknown kind,
	// lengths that are inconsistent, over the limits, truncated or followed by trailing bytes.
	ErrBadFrame = errors.New("wire: invalid chunk frame")
	// ErrFrameDigest means a frame's (or a reassembled object's) plain bytes do not hash to the
	// digest the frame names.
	ErrFrameDigest = errors.New("wire: chunk frame digest mismatch")
	// ErrNotFound means the hub answered a fetch with "no such digest".
	ErrNotFound = errors.New("wire: hub has no such digest")
)
