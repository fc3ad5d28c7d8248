// Package rollout holds the rollout controller: the leader-only loop that moves rollouts
// through their waves, computes the health, drift and validation gates from what devices
// report, and stops a rollout whose new version makes devices fail, drift or see invalid data.
//
// Every decision is a Raft command carrying the gate values it was made on (see
// hub/state/rollouts.go), so after a leader change the new leader carries on from the
// replicated state and the audit log shows why each wave started or stopped.
package rollout

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sort"
)

// Plan errors.
var (
	// ErrNoDevices means the selector matched no device.
	ErrNoDevices = errors.New("the selector matches no device")
	// ErrBadWaves means the waves are not increasing positive percentages or counts.
	ErrBadWaves = errors.New("bad waves")
)

// Candidate is a device a rollout may include.
type Candidate struct {
	ID     string
	Canary bool
}

// Order returns the devices in the rollout's deterministic order: canary-labelled devices first,
// then by a hash of the rollout id and device id, so the same rollout replayed gives the same
// waves and different rollouts spread their first waves over different devices.
func Order(rolloutID string, devs []Candidate) []string {
	type keyed struct {
		id     string
		canary bool
		h      uint64
	}
	ks := make([]keyed, len(devs))
	for i, d := range devs {
		sum := sha256.Sum256([]byte(rolloutID + "\x00" + d.ID))
		ks[i] = keyed{d.ID, d.Canary, binary.BigEndian.Uint64(sum[:8])}
	}
	sort.Slice(ks, func(i, j int) bool {
		if ks[i].canary != ks[j].canary {
			return ks[i].canary
		}
		if ks[i].h != ks[j].h {
			return ks[i].h < ks[j].h
		}
		return ks[i].id < ks[j].id
	})
	out := make([]string, len(ks))
	for i, k := range ks {
		out[i] = k.id
	}
	return out
}

// WaveSizes turns waves into cumulative device counts for n devices. Percentages (counts false)
// are cumulative shares of the selection, e.g. [1, 10, 50, 100]; counts are cumulative numbers of
// devices, e.g. [1, 5, 20]. Every wave gets at least one device; waves that would add none
// (the selection is already covered) are dropped. A last wave below 100% (or below n) leaves
// the remaining devices untouched.
func WaveSizes(waves []float64, counts bool, n int) ([]int, error) {
	if n == 0 {
		return nil, ErrNoDevices
	}
	if len(waves) == 0 {
		return nil, fmt.Errorf("%w: give at least one wave", ErrBadWaves)
	}
	var out []int
	prevIn, prev := 0.0, 0
	for i, w := range waves {
		if w <= prevIn || math.IsNaN(w) || (!counts && w > 100) || (counts && w != math.Trunc(w)) {
			return nil, fmt.Errorf("%w: wave %d (%g) must be above the previous one%s", ErrBadWaves, i+1, w,
				map[bool]string{false: " and at most 100", true: " and a whole number"}[counts])
		}
		prevIn = w
		size := int(w)
		if !counts {
			size = int(math.Ceil(w * float64(n) / 100))
		}
		size = min(max(size, prev+1), n)
		if size <= prev {
			continue
		}
		out = append(out, size)
		prev = size
	}
	return out, nil
}
