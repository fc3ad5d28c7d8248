package contract

import (
	"strconv"
	"testing"
)

// TestFastFloat checks the fast path against strconv on the inputs it takes and refuses.
func TestFastFloat(t *testing.T) {
	for _, s := range []string{
		"0", "-0", "1", "1.5", "-2.25", "0.1", "0.3", "123.456", "999999999999999", "0.000000000000001",
		"73.96732207", "74.93588199999998", "1234567890.12345", "9007199254740993", "1.", ".5", "1e5",
		"00012.5000", "0.0000000000000000000001", "12345678901234567890",
	} {
		want, err := strconv.ParseFloat(s, 64)
		got, ok := fastFloat([]byte(s))
		if ok && (err != nil || got != want) {
			t.Errorf("fastFloat(%q) = %v, strconv %v %v", s, got, want, err)
		}
		if full, ok := parseFloat([]byte(s)); err == nil && (!ok || full != want) {
			t.Errorf("parseFloat(%q) = %v %v, want %v", s, full, ok, want)
		}
	}
}

func FuzzFastFloat(f *testing.F) {
	for _, s := range []string{"1.5", "-0.001", "123456789012345", "0.1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, ok := fastFloat([]byte(s))
		if !ok {
			return
		}
		want, err := strconv.ParseFloat(s, 64)
		if err != nil || got != want {
			t.Fatalf("fastFloat(%q) = %v, strconv %v %v", s, got, want, err)
		}
	})
}
