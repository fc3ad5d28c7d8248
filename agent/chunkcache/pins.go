package chunkcache

import (
	"crypto/sha256"
	"fmt"

	"github.com/driftline/driftline/shared/artifact"
)

// Pin makes set name exactly the chunks digests (replacing what the set named before) and
// protects them from eviction until Unpin(name). Digests need not be held yet: a downloading
// version pins its whole manifest first, so each chunk is protected the moment it arrives.
// The set is persisted. A malformed digest wraps artifact.ErrBadDigest and changes nothing.
func (c *Cache) Pin(name string, digests []string) error {
	if name == "" {
		return fmt.Errorf("pin: empty set name")
	}
	sums := make([]sum, 0, len(digests))
	seen := make(map[sum]bool, len(digests))
	for _, d := range digests {
		s, err := artifact.ParseDigest(d)
		if err != nil {
			return fmt.Errorf("pin %s: %w", name, err)
		}
		if !seen[s] {
			seen[s] = true
			sums = append(sums, s)
		}
	}
	val := make([]byte, 0, len(sums)*sha256.Size)
	for _, s := range sums {
		val = append(val, s[:]...)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.pins.Set([]byte(name), val); err != nil {
		return fmt.Errorf("pin %s: %w", name, err)
	}
	c.setPinsLocked(name, sums)
	return nil
}

// Unpin removes pin set name; its chunks become evictable unless another set names them.
// Unpinning an unknown set is not an error.
func (c *Cache) Unpin(name string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.pins.Delete([]byte(name)); err != nil {
		return fmt.Errorf("unpin %s: %w", name, err)
	}
	c.setPinsLocked(name, nil)
	return nil
}

// setPinsLocked replaces set name's sums in memory and keeps pinCount in step.
func (c *Cache) setPinsLocked(name string, sums []sum) {
	for _, s := range c.pinSets[name] {
		if c.pinCount[s]--; c.pinCount[s] <= 0 {
			delete(c.pinCount, s)
		}
	}
	delete(c.pinSets, name)
	if len(sums) == 0 {
		return
	}
	c.pinSets[name] = sums
	for _, s := range sums {
		c.pinCount[s]++
	}
}

// decodePins splits a stored pin set into sums.
func decodePins(b []byte) ([]sum, error) {
	if len(b)%sha256.Size != 0 {
		return nil, fmt.Errorf("%w: pin set of %d bytes", ErrCorruptMeta, len(b))
	}
	out := make([]sum, len(b)/sha256.Size)
	for i := range out {
		copy(out[i][:], b[i*sha256.Size:])
	}
	return out, nil
}
