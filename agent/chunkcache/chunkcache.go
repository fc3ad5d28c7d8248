// Package chunkcache keeps verified artifact chunks on the agent, keyed by their "sha256:HEX"
// digest and stored zstd-compressed in the agent's state namespace, under a size cap with
// least-recently-used eviction.
//
// Invariants:
//   - Only verified bytes go in: Put hashes the plain bytes and refuses a mismatch.
//   - Only verified bytes come out: Get decompresses and hashes again; an entry that fails is
//     deleted, counted and reported as missing (ErrNotFound), so the caller fetches it anew.
//   - Chunks named by a pin set (Pin: the active version and the one downloading) are never
//     evicted. The cap bounds the rest; pinned chunks alone may hold the cache over it.
//   - Entries, recency and pins are persisted, so a restart keeps the cache and its order.
package chunkcache

import (
	"container/list"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/driftline/driftline/agent/devicedb"
	"github.com/driftline/driftline/shared/artifact"
	"github.com/driftline/driftline/shared/zstdx"
)

var (
	// ErrNotFound is returned by Get for a chunk the cache does not hold, or held corrupt.
	ErrNotFound = errors.New("chunkcache: chunk not found")
	// ErrDigestMismatch is returned by Put when the bytes do not hash to the digest.
	ErrDigestMismatch = errors.New("chunkcache: digest mismatch")
	// ErrTooLarge is returned by Put for a chunk over Options.MaxItem or over the whole cap.
	ErrTooLarge = errors.New("chunkcache: chunk too large")
	// ErrNoRoom is returned by Put for an unpinned chunk when pinned chunks fill the cap.
	ErrNoRoom = errors.New("chunkcache: no room beside pinned chunks")
	// ErrCorruptMeta marks a damaged bookkeeping record; Open drops such entries.
	ErrCorruptMeta = errors.New("chunkcache: corrupt metadata")
)

// Options size a Cache. Zero values take the defaults.
type Options struct {
	// MaxBytes caps the stored (compressed) size of all chunks (default 256 MiB).
	MaxBytes int64
	// MaxItem is the largest plain chunk Put accepts (default zstdx.MaxDecoded: manifests,
	// contracts and profiles travel as "chunks" too, artifact chunks are at most 256 KiB).
	MaxItem int
	// Logger receives corrupt entries and evictions (default slog.Default()).
	Logger *slog.Logger
}

// Stats is a snapshot of the cache.
type Stats struct {
	// Entries and Bytes count what the cache holds; Bytes is what counts against MaxBytes.
	Entries int
	Bytes   int64
	// PinnedEntries counts held chunks named by some pin set.
	PinnedEntries int
	// Evicted and Corrupt count entries removed since Open, by eviction and by failed checks.
	Evicted, Corrupt uint64
}

type sum = [sha256.Size]byte

// Children of the cache's namespace; every key in data and meta is a raw 32-byte SHA-256.
const (
	subData = "data" // compressed chunk bytes
	subMeta = "meta" // encodeMeta: last use and stored size
	subPins = "pins" // pin set name -> concatenated raw sums
)

// entry is the in-memory index of one held chunk.
type entry struct {
	sum  sum
	size int64  // stored bytes: key and compressed value
	tick uint64 // last use, a persisted logical clock
}

// Cache is the chunk store. It is safe for concurrent use.
type Cache struct {
	ns               devicedb.Namespace // parent of data, meta and pins
	data, meta, pins devicedb.Namespace
	opts             Options
	log              *slog.Logger

	mu       sync.Mutex
	index    map[sum]*list.Element // of *entry
	lru      *list.List            // front = most recently used
	pinSets  map[string][]sum
	pinCount map[sum]int
	bytes    int64
	tick     uint64
	evicted  uint64
	corrupt  uint64
}

// Open loads the cache kept in ns: its index, recency order and pin sets. Damaged bookkeeping
// is dropped with its chunk (counted as corrupt).
func Open(ns devicedb.Namespace, opts Options) (*Cache, error) {
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = 256 << 20
	}
	if opts.MaxItem <= 0 || opts.MaxItem > zstdx.MaxDecoded {
		opts.MaxItem = zstdx.MaxDecoded
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	c := &Cache{
		ns: ns, data: ns.Sub(subData), meta: ns.Sub(subMeta), pins: ns.Sub(subPins),
		opts: opts, log: opts.Logger.With("component", "chunkcache"),
		index: map[sum]*list.Element{}, lru: list.New(),
		pinSets: map[string][]sum{}, pinCount: map[sum]int{},
	}
	if err := c.load(); err != nil {
		return nil, fmt.Errorf("open chunk cache: %w", err)
	}
	return c, nil
}

// Has reports whether the cache holds digest (without verifying it; Get does).
func (c *Cache) Has(digest string) bool {
	s, err := artifact.ParseDigest(digest)
	if err != nil {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.index[s]
	return ok
}

// Get returns the plain bytes of digest after checking that they hash to it. A missing chunk,
// or one whose stored bytes fail to decompress or verify (it is then deleted), returns an error
// wrapping ErrNotFound. A malformed digest wraps artifact.ErrBadDigest.
func (c *Cache) Get(digest string) ([]byte, error) {
	s, err := artifact.ParseDigest(digest)
	if err != nil {
		return nil, err
	}
	stored, err := c.data.Get(s[:])
	if errors.Is(err, devicedb.ErrNotFound) {
		c.mu.Lock()
		defer c.mu.Unlock()
		if _, ok := c.index[s]; ok {
			// Indexed without data (a corrupt copy was dropped while a Put of it was in
			// flight): forget it so that Has stops claiming it.
			if err := c.removeLocked([]sum{s}); err != nil {
				return nil, fmt.Errorf("drop missing chunk %s: %w", digest, err)
			}
		}
		return nil, fmt.Errorf("%w: %s", ErrNotFound, digest)
	}
	if err != nil {
		return nil, fmt.Errorf("read chunk %s: %w", digest, err)
	}
	plain, err := zstdx.Decode(nil, stored, c.opts.MaxItem)
	if err == nil && sha256.Sum256(plain) != s {
		err = ErrDigestMismatch
	}
	if err != nil {
		c.log.Warn("dropping corrupt cached chunk", "digest", digest, "err", err)
		c.mu.Lock()
		c.corrupt++
		delErr := c.removeLocked([]sum{s})
		c.mu.Unlock()
		if delErr != nil {
			return nil, fmt.Errorf("drop corrupt chunk %s: %w", digest, delErr)
		}
		return nil, fmt.Errorf("%w: %s was corrupt and is deleted: %v", ErrNotFound, digest, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.index[s]; ok {
		e := el.Value.(*entry)
		c.tick++
		e.tick = c.tick
		c.lru.MoveToFront(el)
		if err := c.meta.Set(s[:], encodeMeta(e)); err != nil {
			return nil, fmt.Errorf("touch chunk %s: %w", digest, err)
		}
	}
	return plain, nil
}

// Put stores plain under digest after checking that it hashes to digest (ErrDigestMismatch).
// Storing a chunk already held only marks it used. To stay under the cap it evicts the least
// recently used unpinned chunks; if pinned chunks leave no room, an unpinned chunk is refused
// with ErrNoRoom and a pinned one is stored over the cap.
func (c *Cache) Put(digest string, plain []byte) error { return c.put(digest, plain, true) }

// PutIfRoom is Put that never goes over the cap: when evicting every unpinned chunk would not
// make room, it refuses even a pinned chunk (ErrNoRoom). For chunks kept in case they are
// needed again, which must not crowd out what is.
func (c *Cache) PutIfRoom(digest string, plain []byte) error { return c.put(digest, plain, false) }

// put is Put; overCap allows a pinned chunk to be stored over the cap.
func (c *Cache) put(digest string, plain []byte, overCap bool) error {
	s, err := artifact.ParseDigest(digest)
	if err != nil {
		return err
	}
	if len(plain) > c.opts.MaxItem {
		return fmt.Errorf("%w: %s is %d bytes, max %d", ErrTooLarge, digest, len(plain), c.opts.MaxItem)
	}
	if sha256.Sum256(plain) != s {
		return fmt.Errorf("%w: bytes given for %s hash to %s", ErrDigestMismatch, digest, artifact.DigestOf(plain))
	}
	stored := zstdx.Encode(nil, plain)
	size := int64(len(stored) + len(s))
	if size > c.opts.MaxBytes {
		return fmt.Errorf("%w: %s needs %d stored bytes, cap %d", ErrTooLarge, digest, size, c.opts.MaxBytes)
	}

	c.mu.Lock()
	if el, ok := c.index[s]; ok {
		defer c.mu.Unlock()
		c.tick++
		el.Value.(*entry).tick = c.tick
		c.lru.MoveToFront(el)
		return c.meta.Set(s[:], encodeMeta(el.Value.(*entry)))
	}
	if _, fits := c.victimsLocked(size); !fits && (!overCap || c.pinCount[s] == 0) {
		defer c.mu.Unlock()
		return fmt.Errorf("%w: %s needs %d bytes, %d held, cap %d", ErrNoRoom, digest, size, c.bytes, c.opts.MaxBytes)
	}
	c.tick++
	e := &entry{sum: s, size: size, tick: c.tick}
	c.mu.Unlock()

	// The chunk is written outside the lock, so that the Puts of a pull's workers commit
	// together. Until it is in the index it is invisible to Has and to eviction; a crash
	// before that leaves data and meta on disk, which Open indexes like any other entry.
	err = c.ns.Update(func(tx *devicedb.Txn) error {
		// data and meta are siblings: one transaction on the parent keeps them in step.
		if err := tx.Sub(subData).Set(s[:], stored); err != nil {
			return err
		}
		return tx.Sub(subMeta).Set(s[:], encodeMeta(e))
	})
	if err != nil {
		return fmt.Errorf("store chunk %s: %w", digest, err)
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.index[s]; ok {
		return nil // a concurrent Put of the same chunk indexed it first
	}
	victims, fits := c.victimsLocked(size)
	if !fits && (!overCap || c.pinCount[s] == 0) {
		// Concurrent Puts took the room meanwhile: take this one back out (it is not indexed,
		// so removeLocked only deletes its data and meta).
		if err := c.removeLocked([]sum{s}); err != nil {
			return fmt.Errorf("drop unindexed chunk %s: %w", digest, err)
		}
		return fmt.Errorf("%w: %s needs %d bytes, %d held, cap %d", ErrNoRoom, digest, size, c.bytes, c.opts.MaxBytes)
	}
	if !fits {
		c.log.Warn("pinned chunks hold the cache over its cap", "bytes", c.bytes+size, "cap", c.opts.MaxBytes)
	}
	if err := c.removeLocked(victims); err != nil {
		return fmt.Errorf("evict for %s: %w", digest, err)
	}
	c.evicted += uint64(len(victims))
	c.index[s] = c.lru.PushFront(e)
	c.bytes += size
	return nil
}

// victimsLocked picks the least recently used unpinned chunks to evict so that need more bytes
// fit the cap. fits is false when evicting every unpinned chunk would not be enough; then no
// victims are returned.
func (c *Cache) victimsLocked(need int64) (victims []sum, fits bool) {
	free := c.opts.MaxBytes - c.bytes
	for el := c.lru.Back(); el != nil && free < need; el = el.Prev() {
		e := el.Value.(*entry)
		if c.pinCount[e.sum] > 0 {
			continue
		}
		victims = append(victims, e.sum)
		free += e.size
	}
	if free < need {
		return nil, false
	}
	return victims, true
}

// removeLocked deletes chunks (data and meta) from disk and the index.
func (c *Cache) removeLocked(sums []sum) error {
	for len(sums) > 0 {
		batch := sums[:min(len(sums), 500)]
		sums = sums[len(batch):]
		err := c.ns.Update(func(tx *devicedb.Txn) error {
			data, meta := tx.Sub(subData), tx.Sub(subMeta)
			for _, s := range batch {
				if err := data.Delete(s[:]); err != nil {
					return err
				}
				if err := meta.Delete(s[:]); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, s := range batch {
			if el, ok := c.index[s]; ok {
				c.bytes -= el.Value.(*entry).size
				c.lru.Remove(el)
				delete(c.index, s)
			}
		}
	}
	return nil
}

// Stats returns a snapshot of the cache's size and counters.
func (c *Cache) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := Stats{Entries: len(c.index), Bytes: c.bytes, Evicted: c.evicted, Corrupt: c.corrupt}
	for s := range c.index {
		if c.pinCount[s] > 0 {
			st.PinnedEntries++
		}
	}
	return st
}

// encodeMeta is the persisted bookkeeping of e: last-use tick and stored size, big endian.
func encodeMeta(e *entry) []byte {
	b := binary.BigEndian.AppendUint64(nil, e.tick)
	return binary.BigEndian.AppendUint64(b, uint64(e.size))
}

// decodeMeta parses encodeMeta's output.
func decodeMeta(b []byte) (tick uint64, size int64, err error) {
	if len(b) != 16 {
		return 0, 0, fmt.Errorf("%w: %d bytes, want 16", ErrCorruptMeta, len(b))
	}
	tick = binary.BigEndian.Uint64(b[:8])
	size = int64(binary.BigEndian.Uint64(b[8:]))
	if size <= sha256.Size || size > 1<<40 {
		return 0, 0, fmt.Errorf("%w: size %d", ErrCorruptMeta, size)
	}
	return tick, size, nil
}
