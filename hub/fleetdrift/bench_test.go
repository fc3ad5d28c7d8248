package fleetdrift_test

import (
	"testing"
	"time"

	"github.com/driftline/driftline/hub/fleetdrift"
)

// BenchmarkObserve measures one device window profile (1,000 rows, one numeric and one
// categorical feature) going through Observe: decode, registry read, compare, merge.
func BenchmarkObserve(b *testing.B) {
	s := newFleetSetup(b, fleetdrift.Config{})
	payload := windowProfile(b, 1000, 20, "abc", 1)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i%1000 == 0 {
			s.clk.Add(time.Minute) // a new window now and then, as in a live fleet
		}
		if err := s.svc.Observe("d1", payload); err != nil {
			b.Fatal(err)
		}
	}
}
