package procstat

import (
	"os"
	"testing"
	"time"
)

func TestSelf(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skipf("no /proc here (%v): nothing to read", err)
	}
	// Burn CPU until the kernel's tick-granular counter shows some.
	busy, deadline := 0, time.Now().Add(5*time.Second)
	for CPU(os.Getpid()) == 0 && time.Now().Before(deadline) {
		for i := range 1_000_000 {
			busy += i
		}
	}
	rss, anon := Memory(os.Getpid())
	if cpu := CPU(os.Getpid()); cpu <= 0 || rss <= 0 || anon <= 0 || anon > rss {
		t.Fatalf("cpu %v, rss %d, anon %d (busy %d)", cpu, rss, anon, busy)
	}
	if cpu, rss := CPU(-1), func() int64 { r, _ := Memory(-1); return r }(); cpu != 0 || rss != 0 {
		t.Fatalf("no process: cpu %v, rss %d", cpu, rss)
	}
}
