// Package clock is the hub's wall clock for the times it records and signs: command timestamps
// (the leader stamps each command, and the state machine's leases and expiries compare them),
// the rollout controller's clock and the expiry of signed desired states.
//
// Now is time.Now, unless the environment variable DRIFTLINE_CLOCK_OFFSET_FILE names a file: Now
// is then shifted by the Go duration the file holds ("-1h30m"; missing, empty or unparsable: no
// shift), re-read at most every 100 ms. The fault-injection harness (internal/chaos) jumps one
// node's clock with it while the node runs: Go binaries read the clock through the vDSO, not
// libc, so libfaketime's LD_PRELOAD does not reach them. Durations measured inside the process
// (time.Since, timers) keep the monotonic clock, as they do across a real jump.
package clock

import (
	"os"
	"strings"
	"sync"
	"time"
)

// EnvOffsetFile names the environment variable that enables the shift (see the package doc).
const EnvOffsetFile = "DRIFTLINE_CLOCK_OFFSET_FILE"

var (
	file = os.Getenv(EnvOffsetFile)

	mu     sync.Mutex
	offset time.Duration
	readAt time.Time
)

// Now returns the current wall-clock time, shifted when the harness asks (see the package doc).
func Now() time.Time {
	if file == "" {
		return time.Now()
	}
	return time.Now().Round(0).Add(Offset())
}

// Offset returns the shift Now applies (0 unless DRIFTLINE_CLOCK_OFFSET_FILE is set).
func Offset() time.Duration {
	if file == "" {
		return 0
	}
	mu.Lock()
	defer mu.Unlock()
	if now := time.Now(); now.Sub(readAt) >= 100*time.Millisecond {
		readAt = now
		offset = 0
		if b, err := os.ReadFile(file); err == nil {
			if d, err := time.ParseDuration(strings.TrimSpace(string(b))); err == nil {
				offset = d
			}
		}
	}
	return offset
}
