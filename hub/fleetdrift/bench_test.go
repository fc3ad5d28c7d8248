package fleetdrift_test

import (
	"fmt"
	"runtime"
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

// BenchmarkDeviceMemory measures what the service keeps per device once every device has sent a
// full history of windows (Config.DeviceHistory, 60): the Go heap the service holds afterwards,
// divided by the devices (heap-B/device). The bench-fleet steady window (a minute) sees only a
// window or two per device; a hub that has run for an hour holds this.
func BenchmarkDeviceMemory(b *testing.B) {
	const devices = 300
	for range b.N {
		b.StopTimer()
		s := newFleetSetup(b, fleetdrift.Config{})
		for i := range devices {
			s.h.device(b, fmt.Sprintf("dev-%04d", i), "m", 1)
		}
		payloads := [][]byte{windowProfile(b, 600, 20, "abc", 1), windowProfile(b, 600, 24, "abd", 2)}
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		b.StartTimer()
		for w := range 60 {
			s.clk.Add(time.Minute)
			for i := range devices {
				if err := s.svc.Observe(fmt.Sprintf("dev-%04d", i), payloads[(i+w)%2]); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.StopTimer()
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/devices, "heap-B/device")
		runtime.KeepAlive(s.svc)
	}
}
