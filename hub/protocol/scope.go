package protocol

import (
	"errors"
	"sync"

	"github.com/driftline/driftline/hub/state"
	"github.com/driftline/driftline/shared/artifact"
)

// manifestChunksCache bounds the cache of manifests' chunk sets: a fleet runs a handful of
// versions at once.
const manifestChunksCache = 64

// fetchScope is what one fetch request may be answered with: the device's scope
// (state.DeviceScope) and the chunk digests of the manifests in it. A device fetches only
// objects of the model versions it is told to run; anything else gets a not-found frame, as if
// it did not exist.
type fetchScope struct {
	sc     state.DeviceScope
	chunks []map[string]bool
	models []string // the model of each chunk set
}

// chunk reports whether digest d is a chunk of a manifest in the scope.
func (f *fetchScope) chunk(d string) bool {
	for _, set := range f.chunks {
		if set[d] {
			return true
		}
	}
	return false
}

// modelChunk reports whether digest d is a chunk of a version of model name in the scope.
func (f *fetchScope) modelChunk(name, d string) bool {
	for i, set := range f.chunks {
		if f.models[i] == name && set[d] {
			return true
		}
	}
	return false
}

// object reports whether the registry object digest, which the object index names ref, is in
// the scope (state.Reader.HoldsObject: by digest, not only by the one version the index names).
func (f *fetchScope) object(r state.Reader, digest string, ref state.ObjectRef) (bool, error) {
	return r.HoldsObject(f.sc, digest, ref)
}

// chunkSets caches each manifest's chunk digests, keyed by manifest digest (immutable content).
type chunkSets struct {
	mu    sync.Mutex
	sets  map[string]map[string]bool
	order []string
}

// scopeFor returns the fetch scope of device id.
func (s *Service) scopeFor(id string) (*fetchScope, error) {
	sc, err := s.cfg.Reader.DeviceScope(id)
	if err != nil && !errors.Is(err, state.ErrNotFound) {
		return nil, err
	}
	f := &fetchScope{sc: sc}
	for name, vs := range sc.Models {
		for v, digest := range vs {
			set, err := s.chunkSet(name, v, digest)
			if err != nil {
				return nil, err
			}
			f.chunks = append(f.chunks, set)
			f.models = append(f.models, name)
		}
	}
	return f, nil
}

// chunkSet returns the chunk digests of model name@v, whose manifest digest is digest.
func (s *Service) chunkSet(name string, v int, digest string) (map[string]bool, error) {
	c := &s.chunkSets
	c.mu.Lock()
	set, ok := c.sets[digest]
	c.mu.Unlock()
	if ok {
		return set, nil
	}
	raw, err := s.cfg.Reader.Manifest(name, v)
	if err != nil {
		return nil, err
	}
	m, err := artifact.DecodeManifest(raw)
	if err != nil {
		return nil, err
	}
	set = make(map[string]bool, len(m.Chunks))
	for _, ch := range m.Chunks {
		set[ch.Digest] = true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sets == nil {
		c.sets = map[string]map[string]bool{}
	}
	if _, ok := c.sets[digest]; !ok {
		if len(c.order) >= manifestChunksCache {
			delete(c.sets, c.order[0])
			c.order = c.order[1:]
		}
		c.sets[digest] = set
		c.order = append(c.order, digest)
	}
	return set, nil
}
