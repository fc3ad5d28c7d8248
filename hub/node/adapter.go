package node

import (
	"context"
	"errors"

	"github.com/driftline/driftline/hub/api"
	"github.com/driftline/driftline/hub/command"
	"github.com/driftline/driftline/hub/store"
)

// storeAdapter presents the Raft store as the API's Store interface.
type storeAdapter struct{ s *store.Store }

func (a storeAdapter) Apply(ctx context.Context, env command.Envelope) (any, error) {
	return a.s.Apply(ctx, env)
}
func (a storeAdapter) Barrier(ctx context.Context) error { return a.s.Barrier(ctx) }
func (a storeAdapter) IsLeader() bool                    { return a.s.IsLeader() }
func (a storeAdapter) LeaderHTTP() (string, string, bool) {
	return a.s.LeaderHTTP()
}
func (a storeAdapter) Ready() bool          { return a.s.Ready() }
func (a storeAdapter) AppliedIndex() uint64 { return a.s.AppliedIndex() }
func (a storeAdapter) WaitApplied(ctx context.Context, index uint64) error {
	return a.s.WaitApplied(ctx, index)
}

func (a storeAdapter) Cluster() api.ClusterStatus {
	st := a.s.Status()
	out := api.ClusterStatus{
		Term: st.Term, CommitIndex: st.CommitIndex, AppliedIndex: st.AppliedIndex,
		State: st.State, Nodes: []api.NodeStatus{}, Self: a.s.NodeID(),
	}
	if st.LeaderID != "" {
		out.Leader = &api.NodeRef{ID: st.LeaderID, HTTP: st.LeaderHTTP}
	}
	for _, n := range st.Nodes {
		out.Nodes = append(out.Nodes, api.NodeStatus{ID: n.ID, Raft: n.Raft, HTTP: n.HTTP, State: n.State, Voter: n.Voter})
	}
	return out
}
func (a storeAdapter) AddNonvoter(ctx context.Context, id, raftAddr, httpAddr string) (uint64, error) {
	return a.s.AddNonvoter(ctx, id, raftAddr, httpAddr)
}
func (a storeAdapter) Promote(ctx context.Context, id, raftAddr string) error {
	return a.s.Promote(ctx, id, raftAddr)
}
func (a storeAdapter) Remove(ctx context.Context, id string) error { return a.s.Remove(ctx, id) }
func (a storeAdapter) IsNotLeader(err error) bool {
	return errors.Is(err, store.ErrNotLeader) || errors.Is(err, store.ErrLeadershipLost)
}

func (a storeAdapter) StateDigest() (api.StateDigest, error) {
	d, err := a.s.Digest()
	return api.StateDigest{AppliedIndex: d.AppliedIndex, Digest: d.Digest, Keys: d.Keys}, err
}
