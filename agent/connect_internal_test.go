package agent

import (
	"testing"
	"time"

	"github.com/eclipse/paho.mqtt.golang/packets"
)

// TestConnectPacing: refusals are told from network errors by their CONNACK code, steps double
// up to the cap, and every wait is jittered into [step/2, step].
func TestConnectPacing(t *testing.T) {
	for rc, want := range map[byte]string{
		packets.ErrRefusedBadUsernameOrPassword: RefusedBadCredentials,
		packets.ErrRefusedNotAuthorised:         RefusedNotAuthorized,
		packets.ErrRefusedIDRejected:            RefusedIdentifier,
		packets.ErrRefusedServerUnavailable:     RefusedServerUnavailable,
		packets.ErrRefusedBadProtocolVersion:    RefusedProtocolVersion,
		packets.ErrNetworkError:                 "",
		packets.ErrProtocolViolation:            "",
		packets.Accepted:                        "",
	} {
		if got := refusedReason(rc); got != want {
			t.Errorf("refusedReason(%d) = %q, want %q", rc, got, want)
		}
	}
	var steps []time.Duration
	var step time.Duration
	for range 8 {
		step = grow(step, 10*time.Second, 5*time.Minute)
		steps = append(steps, step)
	}
	want := []time.Duration{10 * time.Second, 20 * time.Second, 40 * time.Second, 80 * time.Second, 160 * time.Second, 5 * time.Minute, 5 * time.Minute, 5 * time.Minute}
	for i := range want {
		if steps[i] != want[i] {
			t.Fatalf("steps %v, want %v", steps, want)
		}
	}
	seen := map[time.Duration]bool{}
	for range 1000 {
		d := jittered(5 * time.Minute)
		if d < 150*time.Second || d > 5*time.Minute {
			t.Fatalf("jittered(5m) = %v, outside [2m30s, 5m]", d)
		}
		seen[d.Truncate(10*time.Second)] = true
	}
	if len(seen) < 10 {
		t.Fatalf("jitter spreads over %d 10-second buckets of 15", len(seen))
	}
}
