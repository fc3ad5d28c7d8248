package wire

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
)

// MaxPayloadSize is the largest JSON payload the decoders read: well under EMQX's default
// 1 MB packet limit.
const MaxPayloadSize = 512 << 10

// Limits on the collections inside payloads.
const (
	// MaxModels is the most models one device's desired or reported state may list.
	MaxModels = 64
	// MaxFields is the most fields a validation report may list violations for, and the most
	// features a fleet drift report may carry.
	MaxFields = 1024
	// MaxRules is the most rules per field a validation report may count.
	MaxRules = 32
	// MaxFetchDigests is the most digests one fetch request may ask for.
	MaxFetchDigests = 256
	// MaxTextLen is the longest free text (last_error, reason), in bytes.
	MaxTextLen = 1024
)

// Payload is a JSON message of the protocol. Validate checks the fields the protocol
// requires; Encode and the Decode functions call it.
type Payload interface {
	Validate() error
}

// Header is embedded in every device payload, so its fields sit flat beside the others.
type Header struct {
	// DeviceID is the publishing (or, for desired, the addressed) device.
	DeviceID string `json:"device_id"`
	// TS is when the message was made, Unix milliseconds.
	TS int64 `json:"ts"`
}

// Validate checks the device id and that ts is positive.
func (h Header) Validate() error {
	if err := ValidateName("device_id", h.DeviceID); err != nil {
		return err
	}
	return checkTS("ts", h.TS)
}

// MatchTopic checks that the payload's device id is the device its topic names (the broker's
// ACL vouches for the topic, not for the payload). It returns an error wrapping
// ErrDeviceMismatch.
func (h Header) MatchTopic(topicDeviceID string) error {
	if h.DeviceID != topicDeviceID {
		return fmt.Errorf("%w: payload says %q, topic %q", ErrDeviceMismatch, h.DeviceID, topicDeviceID)
	}
	return nil
}

// Encode validates p and returns its JSON encoding.
func Encode(p Payload) ([]byte, error) {
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("encode %T: %w", p, asBadPayload(err))
	}
	b, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("encode %T: %w", p, err)
	}
	return b, nil
}

// decode parses one JSON object of type T from b and validates it. Unknown fields are
// ignored (a newer agent may add fields); trailing data is not.
func decode[T any, PT interface {
	*T
	Payload
}](b []byte) (T, error) {
	var v T
	if len(b) > MaxPayloadSize {
		return v, fmt.Errorf("%w: %T: %d bytes, at most %d", ErrBadPayload, v, len(b), MaxPayloadSize)
	}
	// One value and nothing after it but white space (json.Unmarshal refuses trailing data):
	// without a Decoder's buffer, which cost the hub ~40 % more CPU and allocations per
	// heartbeat (BenchmarkDecodeHeartbeat).
	if err := json.Unmarshal(b, PT(&v)); err != nil {
		var zero T
		return zero, fmt.Errorf("%w: %T: %v", ErrBadPayload, v, err)
	}
	if err := PT(&v).Validate(); err != nil {
		var zero T
		return zero, fmt.Errorf("%T: %w", v, asBadPayload(err))
	}
	return v, nil
}

// asBadPayload makes every validation error wrap ErrBadPayload, keeping what it wrapped
// (ErrBadName for a bad device id, say).
func asBadPayload(err error) error {
	if errors.Is(err, ErrBadPayload) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrBadPayload, err)
}

// bad returns an ErrBadPayload error about one field.
func bad(field, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrBadPayload, field, fmt.Sprintf(format, args...))
}

func checkTS(field string, ts int64) error {
	if ts <= 0 {
		return bad(field, "must be a positive Unix millisecond time, got %d", ts)
	}
	return nil
}

func checkNonNeg(field string, v int64) error {
	if v < 0 {
		return bad(field, "must not be negative, got %d", v)
	}
	return nil
}

func checkFinite(field string, v float64) error {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return bad(field, "must be a finite number")
	}
	return nil
}

func checkShare(field string, v float64) error {
	if !(v >= 0 && v <= 1) {
		return bad(field, "must be within 0..1, got %v", v)
	}
	return nil
}

func checkFlag(field string, v int) error {
	if v != 0 && v != 1 {
		return bad(field, "must be 0 or 1, got %d", v)
	}
	return nil
}

func checkText(field, s string) error {
	if len(s) > MaxTextLen {
		return bad(field, "%d bytes, at most %d", len(s), MaxTextLen)
	}
	return nil
}

// checkToken checks a short identifier such as a method or rollout state: 1..32 bytes of
// lowercase letters, digits and '_'.
func checkToken(field, s string) error {
	if s == "" || len(s) > 32 {
		return bad(field, "must be 1..32 bytes, got %d", len(s))
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return bad(field, "%q holds %q", s, c)
		}
	}
	return nil
}

func checkOptFinite(field string, v *float64) error {
	if v == nil {
		return nil
	}
	return checkFinite(field, *v)
}
