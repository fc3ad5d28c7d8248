package store

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/driftline/driftline/hub/command"
)

// A leader must not propose a command type that a node of the cluster does not know: that node
// stops at the entry (applier.halt) until it runs a newer build, which during a rolling upgrade
// means every node not upgraded yet. ClusterKnows answers whether every member of the Raft
// configuration (voters and non-voters: both apply the log) has said, through Config.PeerInfo,
// that its build knows a type. Callers: the store itself before it proposes a command in parts
// (Splitter: parts are newer types than the whole command) and the node's orphan-chunk mark.
//
// What each member said is remembered by id, as the highest MaxCommand it ever reported: builds
// only move forward during an upgrade (a downgrade over a log holding the newer types would stop
// the node anyway), so a member that knew a type and is now unreachable (restarting, partitioned)
// still counts as knowing it. A member never heard from counts as knowing nothing. Members are
// asked only while they are below what a caller needs: the first time at once (the caller waits,
// at most peerInfoTimeout), after that in the background at most every peerInfoRetry, the caller
// getting the answer of the last round meanwhile. Once every member is known to be new enough no
// call leaves the node: ClusterKnows costs a read of the configuration.

// Bounds of the members' build check.
const (
	// peerInfoTimeout bounds one round of asking the members (concurrently).
	peerInfoTimeout = 2 * time.Second
	// peerInfoRetry is the least time between two rounds for a member that was behind or did
	// not answer.
	peerInfoRetry = 2 * time.Second
)

// buildGate is what the members reported (ClusterKnows).
type buildGate struct {
	mu sync.Mutex
	// max is the highest MaxCommand each member (by id) reported.
	max map[string]command.Type
	// asked is when each member was last asked.
	asked map[string]time.Time
	// round is closed when the round in progress ends; nil when none runs.
	round chan struct{}
}

// member is one node to ask.
type member struct{ id, http string }

// ClusterKnows returns nil when every node of the Raft configuration knows command type t (its
// build's MaxCommand is t or above), else an error wrapping ErrClusterBehind that names a node
// behind. Without Config.PeerInfo every node is taken to run this build. See buildGate.
func (s *Store) ClusterKnows(ctx context.Context, t command.Type) error {
	t &^= command.IgnoreIfUnknown
	if s.cfg.PeerInfo == nil {
		return nil
	}
	f := s.raft.GetConfiguration() // the latest configuration, a copy: no call into raft's loop
	if err := f.Error(); err != nil {
		return fmt.Errorf("%w: raft configuration: %w", ErrClusterBehind, err)
	}
	var behind []string
	for _, srv := range f.Configuration().Servers {
		if id := string(srv.ID); id != s.cfg.NodeID {
			behind = append(behind, id)
		}
	}
	g := &s.builds
	g.mu.Lock()
	behind = g.below(behind, t)
	if len(behind) == 0 {
		g.mu.Unlock()
		return nil
	}
	fresh := false // a member never asked: ask now and wait
	for _, id := range behind {
		if _, ok := g.asked[id]; !ok {
			fresh = true
		}
	}
	done := g.startRound(s, behind)
	g.mu.Unlock()
	if fresh && done != nil {
		select {
		case <-done:
		case <-ctx.Done():
		}
		g.mu.Lock()
		behind = g.below(behind, t)
		g.mu.Unlock()
		if len(behind) == 0 {
			return nil
		}
	}
	return fmt.Errorf("%w: node %s has not said its build knows command type %d (a rolling upgrade in progress, or the node is unreachable)", ErrClusterBehind, behind[0], uint16(t))
}

// below returns the ids whose reported MaxCommand is under t. g.mu is held.
func (g *buildGate) below(ids []string, t command.Type) []string {
	var out []string
	for _, id := range ids {
		if g.max[id] < t {
			out = append(out, id)
		}
	}
	return out
}

// startRound starts asking the members ids not asked for peerInfoRetry, unless a round runs
// already, and returns the channel closed when the round (the new one or the running one) ends;
// nil when there is nothing to ask. g.mu is held.
func (g *buildGate) startRound(s *Store, ids []string) chan struct{} {
	if g.round != nil {
		return g.round
	}
	now := time.Now()
	var due []string
	for _, id := range ids {
		if at, ok := g.asked[id]; !ok || now.Sub(at) >= peerInfoRetry {
			due = append(due, id)
		}
	}
	if len(due) == 0 {
		return nil
	}
	if g.max == nil {
		g.max, g.asked = map[string]command.Type{}, map[string]time.Time{}
	}
	addrs := map[string]string{}
	records := s.nodeRecords()
	for _, id := range due {
		g.asked[id] = now
		addrs[id] = records[id].HTTP
	}
	done := make(chan struct{})
	g.round = done
	go func() {
		defer close(done)
		got := s.askMembers(addrs)
		g.mu.Lock()
		defer g.mu.Unlock()
		for id, t := range got {
			g.max[id] = max(g.max[id], t)
		}
		g.round = nil
	}()
	return done
}

// askMembers asks the members (id: recorded API address) for their build's MaxCommand,
// concurrently, within peerInfoTimeout or until the store stops, and returns what those that
// answered said.
func (s *Store) askMembers(addrs map[string]string) map[string]command.Type {
	ctx, cancel := context.WithTimeout(context.Background(), peerInfoTimeout)
	defer cancel()
	go func() {
		select {
		case <-s.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	var mu sync.Mutex
	var wg sync.WaitGroup
	got := map[string]command.Type{}
	for id, addr := range addrs {
		if addr == "" {
			s.log.Warn("cluster build check: no API address recorded for a node", "peer", id)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			maxType, err := s.cfg.PeerInfo(ctx, addr)
			if err != nil {
				s.log.Info("cluster build check: node did not answer", "peer", id, "addr", addr, "err", err)
				return
			}
			mu.Lock()
			got[id] = command.Type(maxType)
			mu.Unlock()
		}()
	}
	wg.Wait() // every answer is in before the round ends: none lands late
	return got
}
