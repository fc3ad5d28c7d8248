package node

import (
	"fmt"
	"net"

	"github.com/hashicorp/raft"

	"github.com/driftline/driftline/hub/cluster"
)

// clusterTLS loads the cluster TLS and opens Raft's mutual-TLS stream layer when cfg names a
// cluster CA; without one it returns nils (plain Raft).
func clusterTLS(cfg Config) (*cluster.TLS, raft.StreamLayer, error) {
	if cfg.TLSCA == "" {
		return nil, nil, nil
	}
	t, err := cluster.LoadTLS(cfg.TLSCA, cfg.TLSCert, cfg.TLSKey)
	if err != nil {
		return nil, nil, err
	}
	var adv net.Addr
	if a := raftAdvertiseOf(cfg); a != "" {
		if adv, err = net.ResolveTCPAddr("tcp", a); err != nil {
			return nil, nil, fmt.Errorf("raft advertise address %q: %w", a, err)
		}
	}
	layer, err := cluster.NewStreamLayer(cfg.RaftAddr, adv, t)
	if err != nil {
		return nil, nil, err
	}
	return t, layer, nil
}
