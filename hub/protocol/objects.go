package protocol

import (
	"sync"
	"time"

	"github.com/driftline/driftline/hub/state"
	"github.com/driftline/driftline/shared/wire"
)

// Registry objects a device fetches before its chunks (a manifest, a contract, a reference
// profile) are answered apart from chunks (issue 18, docs/benchmarks.md "Manifests ahead of
// chunks"):
//
//   - Their own queue and workers (objCh): a request whose every digest is an object the hub
//     answered lately is queued there, so it is never dropped behind per-device chunk serving,
//     whose workers wait on the broker for every 70 KB frame. A wave's devices each ask for the
//     manifest before they join the wave's shared publish: a manifest dropped costs the device
//     its fetch timeout (10 s), and a wave whose manifests trickle out joins the shared topic
//     over a long burst, which the fan-out covers with one publish per wire.MaxSharedHold
//     (run i: 91,648 manifest requests dropped, wave 3 joined over ~130 s, 29 × the model on
//     the shared topic for 3 waves).
//   - Their encoded parts cached by digest (objectCache): the bytes, their SHA-256 and their
//     zstd compression are the same for every device; a request costs its scope check and one
//     frame encoding with its request id. The scope check is never cached: every request is
//     answered only if the object is in the asking device's scope (scope.go), as before.
//
// A request for an object not cached yet (the first of a version) takes the per-device queue
// and fills the cache.

// objectCacheEntries, objectCacheBytes and objectCacheAge bound the object cache: a fleet
// fetches a handful of versions at once (a manifest, a contract and a profile each); an entry
// older than objectCacheAge is read again (its reference in the object index may have moved to
// a later version with the same bytes, which the scope check takes into account).
const (
	objectCacheEntries = 256
	objectCacheBytes   = 64 << 20
	objectCacheAge     = time.Minute
)

// DefaultObjectWorkers is how many workers answer requests for cached objects (objCh): each
// request is CPU work (the device's scope read, one frame encoded) and one publish. As many as
// the per-device queue has (DefaultFetchWorkers): on the external broker every publisher waits
// for room in one window of messages awaiting acknowledgement (PahoTransport), and the workers
// waiting there are the manifests' share of it beside the desired publisher's; with 4, a
// 20,000-device wave dropped 2,650 manifest requests where 16 per-device workers had dropped
// 127 (docs/benchmarks.md, "Manifests ahead of chunks").
const DefaultObjectWorkers = DefaultFetchWorkers

// cachedObject is one registry object's reference in the object index and its frames, ready
// to be encoded for a request (wire.DataParts).
type cachedObject struct {
	ref   state.ObjectRef
	parts []wire.Frame
	size  int
	at    time.Time
}

// objectCache holds the registry objects answered lately, by digest (content-addressed: the
// bytes of a digest never change).
type objectCache struct {
	mu    sync.Mutex
	m     map[string]*cachedObject
	order []string // insertion order, oldest first
	bytes int
}

// get returns the cached object of digest when it is younger than objectCacheAge at now.
func (c *objectCache) get(digest string, now time.Time) (*cachedObject, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	o, ok := c.m[digest]
	if !ok || now.Sub(o.at) > objectCacheAge {
		return nil, false
	}
	return o, true
}

// has reports whether digest is cached, however old: a request for it is a request for an
// object (routing, enqueueFetch).
func (c *objectCache) has(digest string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.m[digest]
	return ok
}

// put caches the object of digest (ref, data), replacing an older entry, and returns it;
// nil when it cannot be framed.
func (c *objectCache) put(digest string, ref state.ObjectRef, data []byte, now time.Time) (*cachedObject, error) {
	parts, err := wire.DataParts(data)
	if err != nil {
		return nil, err
	}
	o := &cachedObject{ref: ref, parts: parts, at: now}
	for _, p := range parts {
		o.size += len(p.Payload)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]*cachedObject{}
	}
	if old, ok := c.m[digest]; ok {
		c.bytes -= old.size
		c.m[digest] = o
		c.bytes += o.size
		return o, nil
	}
	for len(c.order) > 0 && (len(c.order) >= objectCacheEntries || c.bytes+o.size > objectCacheBytes) {
		if old, ok := c.m[c.order[0]]; ok {
			c.bytes -= old.size
			delete(c.m, c.order[0])
		}
		c.order = c.order[1:]
	}
	c.m[digest] = o
	c.order = append(c.order, digest)
	c.bytes += o.size
	return o, nil
}

// frames encodes o's parts as the answer to request reqID.
func (o *cachedObject) frames(reqID string) ([][]byte, error) {
	return wire.EncodeParts(reqID, o.parts)
}
