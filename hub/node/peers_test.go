package node

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/driftline/driftline/internal/testhelp"
)

// TestPeersWithoutLeaderBlockBootstrap: a node with an empty data dir and --peers whose peer holds
// a cluster that has no leader (its only other voter is gone) does not bootstrap a second cluster
// beside it: it waits, then fails to start naming the peer. A node whose peers are all new or
// down bootstraps as before.
func TestPeersWithoutLeaderBlockBootstrap(t *testing.T) {
	n1, tok := testNode(t)
	n2, err := Start(context.Background(), Config{DataDir: t.TempDir(), NodeID: "n2", HTTPAddr: "127.0.0.1:0", RaftAddr: "127.0.0.1:0",
		Join: n1.URL(), JoinToken: tok, Logger: testhelp.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n2.Close() })
	testhelp.WaitFor(t, 20*time.Second, "n2 a voter", func() bool {
		for _, nd := range n1.Store().Status().Nodes {
			if nd.ID == "n2" && nd.Voter {
				return true
			}
		}
		return false
	})
	n1.Close() // n2 alone is not a quorum of two: no leader
	testhelp.WaitFor(t, 20*time.Second, "n2 without a leader", func() bool { return n2.Store().Status().LeaderID == "" })

	cfg := Config{DataDir: t.TempDir(), NodeID: "n1", HTTPAddr: "127.0.0.1:0", RaftAddr: "127.0.0.1:0",
		Peers: []string{n2.URL()}, Logger: testhelp.Logger(t), peerWait: time.Second}
	if n, err := Start(context.Background(), cfg); err == nil {
		n.Close()
		t.Fatal("an empty node bootstrapped beside a peer that holds a cluster")
	} else if !strings.Contains(err.Error(), n2.URL()) || !strings.Contains(err.Error(), "no leader") {
		t.Fatalf("error %v: want it to name the peer and say it has no leader", err)
	}

	// Peers that are down: bootstrap.
	cfg.DataDir, cfg.Peers = t.TempDir(), []string{"http://127.0.0.1:1"}
	n, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	testhelp.WaitFor(t, 20*time.Second, "the lone node to lead", func() bool { return n.Store().IsLeader() })
}
