package chunkcache

import (
	"crypto/sha256"
	"sort"

	"github.com/driftline/driftline/shared/artifact"
)

// load rebuilds the in-memory index from disk: meta gives size and recency, data keys without
// meta (or meta without data, or damaged meta) are dropped, pin sets are read back.
func (c *Cache) load() error {
	var (
		entries []*entry
		drop    []sum
	)
	err := c.meta.Iterate(false, func(k, v []byte) error {
		if len(k) != sha256.Size {
			return nil
		}
		var s sum
		copy(s[:], k)
		tick, size, err := decodeMeta(v)
		if err != nil {
			c.log.Warn("dropping cached chunk with damaged metadata", "digest", artifact.FormatDigest(s), "err", err)
			drop = append(drop, s)
			return nil
		}
		entries = append(entries, &entry{sum: s, size: size, tick: tick})
		return nil
	})
	if err != nil {
		return err
	}
	have := make(map[sum]bool, len(entries))
	for _, e := range entries {
		have[e.sum] = true
	}
	held := make(map[sum]bool, len(entries))
	err = c.data.IterateKeys(false, func(k []byte, _ int64) error {
		if len(k) != sha256.Size {
			return nil
		}
		var s sum
		copy(s[:], k)
		held[s] = true
		if !have[s] {
			drop = append(drop, s)
		}
		return nil
	})
	if err != nil {
		return err
	}
	kept := entries[:0]
	for _, e := range entries {
		if held[e.sum] {
			kept = append(kept, e)
		} else {
			drop = append(drop, e.sum)
		}
	}
	sort.Slice(kept, func(i, j int) bool { return kept[i].tick > kept[j].tick })
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range kept {
		c.index[e.sum] = c.lru.PushBack(e)
		c.bytes += e.size
		c.tick = max(c.tick, e.tick)
	}
	c.corrupt += uint64(len(drop))
	if err := c.removeLocked(drop); err != nil {
		return err
	}
	err = c.pins.Iterate(false, func(k, v []byte) error {
		sums, err := decodePins(v)
		if err != nil {
			c.log.Warn("dropping damaged pin set", "set", string(k), "err", err)
			return nil
		}
		c.setPinsLocked(string(k), sums)
		return nil
	})
	if err != nil {
		return err
	}
	// A smaller cap than last time: shrink now rather than at the next Put.
	if victims, _ := c.victimsLocked(0); len(victims) > 0 {
		c.evicted += uint64(len(victims))
		return c.removeLocked(victims)
	}
	return nil
}
