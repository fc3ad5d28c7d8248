package drift_test

import (
	"errors"
	"testing"

	"github.com/driftline/driftline/hub/drift"
)

// FuzzObserve feeds arbitrary profile messages from a device that runs a model: each is used
// or refused with a sentinel error, never a panic, and the views stay encodable.
func FuzzObserve(f *testing.F) {
	s := newFleetSetup(f, drift.Config{})
	good := windowProfile(f, 200, 20, "abc", 1)
	f.Add(good)
	f.Add(windowProfile(f, 3, 1e300, "z", 2))
	f.Add([]byte{})
	f.Add(good[:10])
	f.Fuzz(func(t *testing.T, b []byte) {
		err := s.svc.Observe("d1", b)
		if err != nil && !errors.Is(err, drift.ErrBadProfile) && !errors.Is(err, drift.ErrNoModel) {
			t.Fatalf("unexpected error %v", err)
		}
		s.svc.Flush()
		if _, err := s.svc.Fleet(drift.ModelKey{Model: "m", Version: 1}, 0); err != nil {
			t.Fatal(err)
		}
	})
}
