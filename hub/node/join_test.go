package node

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/driftline/driftline/hub/api"
	"github.com/driftline/driftline/internal/testhelp"
)

// TestJoinWithJoinToken: a node joins with a join token (not the admin token), becomes a voter,
// and receives its own node token; the join token admits nothing but joins, and an expired one
// admits nothing at all.
func TestJoinWithJoinToken(t *testing.T) {
	n1, tok := testNode(t)
	var jt api.TokenCreated
	call(t, n1, tok, http.MethodPost, "/api/v1/cluster/join-tokens", api.JoinTokenRequest{TTLSeconds: 600}, http.StatusCreated, &jt)
	if jt.Role != "join" || jt.ExpiresAt <= time.Now().UnixMilli() {
		t.Fatalf("join token %+v", jt)
	}
	// It opens nothing else.
	call(t, n1, jt.Token, http.MethodGet, "/api/v1/devices", nil, http.StatusForbidden, nil)
	call(t, n1, jt.Token, http.MethodPost, "/api/v1/tokens", map[string]string{"name": "x", "role": "admin"}, http.StatusForbidden, nil)
	call(t, n1, jt.Token, http.MethodPost, "/api/v1/cluster/join-tokens", api.JoinTokenRequest{}, http.StatusForbidden, nil)

	dir := t.TempDir()
	n2, err := Start(context.Background(), Config{DataDir: dir, NodeID: "n2", HTTPAddr: "127.0.0.1:0", RaftAddr: "127.0.0.1:0",
		Join: n1.URL(), JoinToken: jt.Token, Logger: testhelp.Logger(t)})
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
	b, err := os.ReadFile(filepath.Join(dir, NodeTokenFile))
	if err != nil {
		t.Fatalf("no node token: %v", err)
	}
	// The node token works for node-to-node calls (an admin token).
	call(t, n1, strings.TrimSpace(string(b)), http.MethodGet, "/api/v1/cluster", nil, http.StatusOK, nil)

	// An expired join token is refused.
	var short api.TokenCreated
	call(t, n1, tok, http.MethodPost, "/api/v1/cluster/join-tokens", api.JoinTokenRequest{TTLSeconds: 1}, http.StatusCreated, &short)
	testhelp.WaitFor(t, 5*time.Second, "the short join token expired", func() bool { return time.Now().UnixMilli() > short.ExpiresAt })
	call(t, n1, short.Token, http.MethodPost, "/api/v1/cluster/join", api.JoinRequest{ID: "n3", Raft: "127.0.0.1:1", HTTP: "127.0.0.1:2"}, http.StatusUnauthorized, nil)
}

// TestClusterClientJoinRemove: the cluster client's typed calls reach the real leader: a node
// joined through cluster.Client.Join is taken out by cluster.Client.Remove with the node token
// of another member; removing an unknown node is refused as a 404.
func TestClusterClientJoinRemove(t *testing.T) {
	n1, tok := testNode(t)
	n2, err := Start(context.Background(), Config{DataDir: t.TempDir(), NodeID: "n2", HTTPAddr: "127.0.0.1:0", RaftAddr: "127.0.0.1:0",
		Join: n1.URL(), JoinToken: tok, Logger: testhelp.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n2.Close() })
	member := func(id string) bool {
		for _, nd := range n1.Store().Status().Nodes {
			if nd.ID == id {
				return true
			}
		}
		return false
	}
	testhelp.WaitFor(t, 20*time.Second, "n2 a member", func() bool { return member("n2") })
	nodeTok, err := n2.nodeToken()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := n2.peers.Remove(ctx, n1.URL(), nodeTok, "ghost"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("removing an unknown node: %v, want a 404", err)
	}
	if err := n2.peers.Remove(ctx, n1.URL(), nodeTok, "n2"); err != nil {
		t.Fatalf("remove n2: %v", err)
	}
	if member("n2") {
		t.Fatalf("n2 still in the configuration: %+v", n1.Store().Status().Nodes)
	}
}
