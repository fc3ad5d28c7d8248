package node

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// A node started with --peers and no --join (StatefulSet pod 0, which bootstraps the cluster the
// first time) asks the peers before it bootstraps: a peer whose /readyz names a leader is in a
// cluster, and the node joins that cluster through it (as a restarted pod 1 or 2 does) instead of
// bootstrapping a second, empty one when its volume was lost. A peer that answers without a leader
// but has applied entries (or names this node as its leader, the one that died) is a member of a
// cluster that is electing: a node with an empty data dir waits for it (up to peerWait, then exits
// non-zero so that it is restarted) rather than split the brain. Peers that are down or are
// themselves new (applied index 0: a first start, every pod waiting on pod 0) let it bootstrap. A
// node with Raft state of its own never waits: it starts from its state, and joins only when a
// leader is already there (it may have been removed as dead meanwhile; joining again is harmless
// for a member).

// joinOrBootstrap joins the cluster at Config.Join; without one but with Config.Peers it asks
// the peers first and joins through the one in a cluster, or bootstraps (findCluster). Without
// either the store bootstrapped at Open.
func (n *Node) joinOrBootstrap(ctx context.Context, advHTTP string) error {
	if n.cfg.Join == "" && len(n.cfg.Peers) > 0 {
		has, err := n.store.HasState()
		if err != nil {
			return fmt.Errorf("node: %w", err)
		}
		via, err := n.findCluster(ctx, has)
		if err != nil {
			return err
		}
		if via == "" {
			if err := n.store.Bootstrap(); err != nil {
				return fmt.Errorf("node: %w", err)
			}
		}
		n.cfg.Join = via
	}
	if n.cfg.Join == "" {
		return nil
	}
	return n.join(ctx, advHTTP)
}

// defaultPeerWait is how long a node with an empty data dir waits for peers that are members of a
// cluster without a leader.
const defaultPeerWait = 2 * time.Minute

// peerReady is the part of a peer's /readyz answer the probe reads.
type peerReady struct {
	Ready        bool   `json:"ready"`
	AppliedIndex uint64 `json:"applied_index"`
	Leader       struct {
		ID string `json:"id"`
	} `json:"leader"`
}

// findCluster returns the peer URL to join through, or "" to start alone (bootstrap when the
// node has no state).
func (n *Node) findCluster(ctx context.Context, hasState bool) (string, error) {
	wait := n.cfg.peerWait
	if wait == 0 {
		wait = defaultPeerWait
	}
	deadline := time.Now().Add(wait)
	for {
		var electing []string
		for _, p := range n.cfg.Peers {
			st, ok := n.probePeer(ctx, p)
			if !ok {
				continue
			}
			if st.Leader.ID != "" && st.Leader.ID != n.cfg.NodeID {
				n.log.Info("a peer is in a cluster: joining it instead of bootstrapping", "peer", p, "leader", st.Leader.ID, "has_state", hasState)
				return p, nil
			}
			if st.Leader.ID == n.cfg.NodeID || st.AppliedIndex > 0 {
				electing = append(electing, p)
			}
		}
		if len(electing) == 0 || hasState {
			return "", nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("node: peers %s are members of a cluster that has no leader; an empty data dir does not bootstrap a second cluster beside it (start again once they have a leader)",
				strings.Join(electing, ", "))
		}
		n.log.Info("peers are in a cluster without a leader yet: waiting before joining", "peers", electing)
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(time.Second): // polling another process; nothing to wait on here
		}
	}
}

// probePeer asks one peer's /readyz (200 and 503 both carry the answer).
func (n *Node) probePeer(ctx context.Context, base string) (peerReady, bool) {
	var st peerReady
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(base, "/")+"/readyz", nil)
	if err != nil {
		return st, false
	}
	res, err := n.peers.HTTP.Do(req)
	if err != nil {
		return st, false
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, 64<<10))
	if err != nil || (res.StatusCode != http.StatusOK && res.StatusCode != http.StatusServiceUnavailable) || json.Unmarshal(b, &st) != nil {
		return st, false
	}
	return st, true
}
