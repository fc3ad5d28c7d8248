package protocol

import (
	"sort"
	"sync"
)

// dirtySet collects the ids of devices whose state changed until a publisher takes them: mark
// adds an id and wakes the publisher through signal (one pending wake-up at most, so a burst of
// changes costs one pass); take empties the set and returns its ids in sorted order.
type dirtySet struct {
	mu     sync.Mutex
	ids    map[string]bool
	signal chan struct{}
}

func newDirtySet() *dirtySet {
	return &dirtySet{ids: map[string]bool{}, signal: make(chan struct{}, 1)}
}

func (d *dirtySet) mark(id string) {
	d.mu.Lock()
	d.ids[id] = true
	d.mu.Unlock()
	signal(d.signal)
}

func (d *dirtySet) take() []string {
	d.mu.Lock()
	ids := make([]string, 0, len(d.ids))
	for id := range d.ids {
		ids = append(ids, id)
	}
	d.ids = map[string]bool{}
	d.mu.Unlock()
	sort.Strings(ids)
	return ids
}
