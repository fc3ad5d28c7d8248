package wire

import (
	"fmt"
	"unicode"
	"unicode/utf8"
)

// MaxNameLen is the longest device id, feature name, model name or rollout id, in bytes.
const MaxNameLen = 128

// MaxRequestIDLen is the longest fetch request id, in bytes.
const MaxRequestIDLen = 64

// ValidateName checks a name that becomes one topic level (device id, feature, model, rollout
// id): 1..MaxNameLen bytes of UTF-8 with no '/', '+', '#' (MQTT level separator and wildcards)
// and no control characters. It returns an error wrapping ErrBadName.
func ValidateName(kind, s string) error {
	if s == "" {
		return fmt.Errorf("%w: empty %s", ErrBadName, kind)
	}
	if len(s) > MaxNameLen {
		return fmt.Errorf("%w: %s is %d bytes, at most %d", ErrBadName, kind, len(s), MaxNameLen)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%w: %s %q is not UTF-8", ErrBadName, kind, s)
	}
	for _, r := range s {
		if r == '/' || r == '+' || r == '#' || unicode.IsControl(r) {
			return fmt.Errorf("%w: %s %q holds %q", ErrBadName, kind, s, r)
		}
	}
	return nil
}

// ValidateRequestID checks a fetch request id: 1..MaxRequestIDLen bytes of ASCII letters,
// digits, '.', '_', ':' or '-' (a UUID fits). It returns an error wrapping ErrBadName.
func ValidateRequestID(s string) error {
	if s == "" || len(s) > MaxRequestIDLen {
		return fmt.Errorf("%w: request id must be 1..%d bytes, got %d", ErrBadName, MaxRequestIDLen, len(s))
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == ':' || c == '-') {
			return fmt.Errorf("%w: request id %q holds %q", ErrBadName, s, c)
		}
	}
	return nil
}
