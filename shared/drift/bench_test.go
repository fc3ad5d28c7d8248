package drift

import "testing"

// BenchmarkCompare scores a 10,000-row window against a 100,000-row reference (one numeric and
// one categorical feature): the agent's cost per window and feature pair.
func BenchmarkCompare(b *testing.B) {
	ref := mixed(b, 1, 100000, 0, []string{"a", "b", "c", "d"})
	cur := mixed(b, 2, 10000, 0.1, []string{"a", "b", "c"})
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := Compare(ref, cur, Options{}); err != nil {
			b.Fatal(err)
		}
	}
}
