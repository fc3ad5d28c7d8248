package store

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
)

// Dead node cleanup (Config.DeadNodeTimeout, `hub serve --dead-node-timeout`), as Consul's
// autopilot does it: the leader watches raft's heartbeat observations and removes a member whose
// heartbeats have failed for longer than the timeout, one per pass, and a voter only while the
// voters it still reaches keep a quorum of the configuration without it. A StatefulSet scaled from
// 5 to 3 thus goes back to 3 voters (quorum 2) instead of keeping 5 (quorum 3 of the 3 left). A
// node that comes back after its removal rejoins through --join or --peers (hub/node) like a new
// member. A new leader starts the clock again for every member (raft's contact times are the
// leader's own).

// reapInterval is how often the leader looks for dead members: a tenth of the timeout, at least
// a second.
func reapInterval(timeout time.Duration) time.Duration {
	return max(timeout/10, time.Second)
}

// reapDeadNodes runs until the store stops.
func (s *Store) reapDeadNodes(timeout time.Duration) {
	defer s.wg.Done()
	ch := make(chan raft.Observation, 64)
	obs := raft.NewObserver(ch, false, func(o *raft.Observation) bool {
		switch o.Data.(type) {
		case raft.FailedHeartbeatObservation, raft.ResumedHeartbeatObservation, raft.LeaderObservation:
			return true
		}
		return false
	})
	s.raft.RegisterObserver(obs)
	defer s.raft.DeregisterObserver(obs)
	failing := map[raft.ServerID]time.Time{} // member -> last contact, while its heartbeats fail
	t := time.NewTicker(reapInterval(timeout))
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case o := <-ch:
			switch d := o.Data.(type) {
			case raft.FailedHeartbeatObservation:
				failing[d.PeerID] = d.LastContact
			case raft.ResumedHeartbeatObservation:
				delete(failing, d.PeerID)
			case raft.LeaderObservation:
				clear(failing)
			}
		case now := <-t.C:
			if !s.IsLeader() {
				clear(failing)
				continue
			}
			if id, ok := s.deadNode(failing, now, timeout); ok {
				ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
				err := s.Remove(ctx, string(id))
				cancel()
				if err != nil {
					s.log.Warn("remove dead node", "node", id, "err", err)
					continue
				}
				s.log.Warn("removed a dead node from the cluster", "node", id, "unreachable_for", now.Sub(failing[id]).Round(time.Second).String(), "timeout", timeout.String())
				delete(failing, id)
				s.metrics.deadRemoved.Inc()
			}
		}
	}
}

// deadNode picks a member to remove: one whose heartbeats have failed for longer than timeout
// (non-voters first), and a voter only when the voters still reached form a quorum of the
// configuration without it.
func (s *Store) deadNode(failing map[raft.ServerID]time.Time, now time.Time, timeout time.Duration) (raft.ServerID, bool) {
	f := s.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return "", false
	}
	servers := f.Configuration().Servers
	voters, reached := 0, 0
	for _, srv := range servers {
		if srv.Suffrage != raft.Voter {
			continue
		}
		voters++
		if _, bad := failing[srv.ID]; !bad || string(srv.ID) == s.cfg.NodeID {
			reached++
		}
	}
	dead := func(srv raft.Server) bool {
		last, bad := failing[srv.ID]
		return bad && string(srv.ID) != s.cfg.NodeID && now.Sub(last) > timeout
	}
	for _, srv := range servers {
		if srv.Suffrage != raft.Voter && dead(srv) {
			return srv.ID, true
		}
	}
	for _, srv := range servers {
		if srv.Suffrage == raft.Voter && dead(srv) && reached >= (voters-1)/2+1 {
			return srv.ID, true
		}
	}
	return "", false
}

// HasState reports whether this node has Raft state on disk (a log, a term or a snapshot): false
// only for a node that never bootstrapped or joined.
func (s *Store) HasState() (bool, error) {
	has, err := raft.HasExistingState(s.logs, s.stable, s.snaps)
	if err != nil {
		return false, fmt.Errorf("check raft state: %w", err)
	}
	return has, nil
}

// Bootstrap bootstraps a one-node cluster when the node has no Raft state (what Open does with
// Config.Bootstrap); for a node that decides after Open (hub/node's --peers).
func (s *Store) Bootstrap() error { return s.bootstrap(s.logs, s.stable, s.snaps) }
