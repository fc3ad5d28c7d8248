package artifact

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
)

// DigestPrefix starts every digest string: Driftline names content by its SHA-256 only.
const DigestPrefix = "sha256:"

// digestLen is the length of a digest string: the prefix and 64 hex digits.
const digestLen = len(DigestPrefix) + 2*sha256.Size

// DigestOf returns the digest string ("sha256:" and 64 lowercase hex digits) of b.
func DigestOf(b []byte) string {
	return FormatDigest(sha256.Sum256(b))
}

// FormatDigest returns the digest string of a raw SHA-256 sum.
func FormatDigest(sum [sha256.Size]byte) string {
	var out [digestLen]byte
	copy(out[:], DigestPrefix)
	hex.Encode(out[len(DigestPrefix):], sum[:])
	return string(out[:])
}

// ParseDigest returns the raw SHA-256 sum named by s. Only the canonical form is accepted
// ("sha256:" and exactly 64 lowercase hex digits), so that one content has one name.
func ParseDigest(s string) ([sha256.Size]byte, error) {
	var sum [sha256.Size]byte
	if len(s) != digestLen || s[:len(DigestPrefix)] != DigestPrefix {
		return sum, fmt.Errorf("%w: %.80q", ErrBadDigest, s)
	}
	for i := len(DigestPrefix); i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return sum, fmt.Errorf("%w: %.80q: not lowercase hex", ErrBadDigest, s)
		}
	}
	if _, err := hex.Decode(sum[:], []byte(s[len(DigestPrefix):])); err != nil {
		return sum, fmt.Errorf("%w: %.80q: %v", ErrBadDigest, s, err)
	}
	return sum, nil
}

// ValidDigest reports whether s is a well-formed digest string.
func ValidDigest(s string) bool {
	_, err := ParseDigest(s)
	return err == nil
}

// hashDigest returns the digest string of what h has hashed so far.
func hashDigest(h hash.Hash) string {
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return FormatDigest(sum)
}
