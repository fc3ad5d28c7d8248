package fleetdrift

import "testing"

func TestParseSince(t *testing.T) {
	cases := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"", 0, true},
		{"1700000000000", 1700000000000, true},
		{"2026-03-01T13:00:00Z", 1772370000000, true},
		{"-5", 0, false},
		{"yesterday", 0, false},
		{"2026-03-01", 0, false},
	}
	for _, c := range cases {
		got, err := parseSince(c.in)
		if (err == nil) != c.ok || (c.ok && got != c.want) {
			t.Errorf("parseSince(%q) = %d, %v; want %d ok=%v", c.in, got, err, c.want, c.ok)
		}
	}
}

// FuzzParseSince: any query text gives a non-negative time or an error, never a panic.
func FuzzParseSince(f *testing.F) {
	for _, s := range []string{"", "0", "1700000000000", "2026-03-01T13:00:00Z", "-1", "9999999999999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if ms, err := parseSince(s); err == nil && ms < 0 {
			t.Fatalf("parseSince(%q) = %d", s, ms)
		}
	})
}
