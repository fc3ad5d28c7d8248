package modelstore

import (
	"fmt"
	"strconv"
)

// maxName bounds a model name's length.
const maxName = 128

// ValidName reports whether name can name a model directory: 1 to 128 bytes of ASCII letters,
// digits, '.', '_' and '-', not starting with '.' (so it is one path component, never hidden,
// never "." or "..").
func ValidName(name string) error {
	if name == "" || len(name) > maxName {
		return fmt.Errorf("%w: length %d, want 1..%d", ErrBadName, len(name), maxName)
	}
	if name[0] == '.' {
		return fmt.Errorf("%w: %q starts with '.'", ErrBadName, name)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
		if !ok {
			return fmt.Errorf("%w: %q has byte %#x at %d", ErrBadName, name, c, i)
		}
	}
	return nil
}

// parseVersion parses a version directory name or link target: a decimal number from 1, in
// canonical form (no sign, no leading zero), so that one version has one directory.
func parseVersion(s string) (int, error) {
	if s == "" || len(s) > 18 || s[0] == '0' {
		return 0, fmt.Errorf("%w: %q", ErrBadVersion, s)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("%w: %q", ErrBadVersion, s)
		}
	}
	v, err := strconv.Atoi(s)
	if err != nil || v < 1 {
		return 0, fmt.Errorf("%w: %q", ErrBadVersion, s)
	}
	return v, nil
}
