package cli

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/driftline/driftline/hub/api"
	"github.com/driftline/driftline/hub/node"
	"github.com/driftline/driftline/internal/freeport"
	"github.com/driftline/driftline/internal/testhelp"
)

func TestClusterRemoveAndJoin(t *testing.T) {
	h := startHub(t)
	raft2 := freeport.Addr(t)
	n2, err := node.Start(context.Background(), node.Config{
		DataDir: t.TempDir(), NodeID: "n2", HTTPAddr: "127.0.0.1:0", RaftAddr: raft2, Join: h.url, JoinToken: h.admin,
		Logger: testhelp.Logger(t),
	})
	if err != nil {
		t.Fatalf("start n2: %v", err)
	}
	t.Cleanup(func() { n2.Close() })
	voters := func() map[string]bool {
		var st api.ClusterStatus
		h.okJSON(t, &st, "cluster", "status")
		m := map[string]bool{}
		for _, n := range st.Nodes {
			m[n.ID] = n.Voter
		}
		return m
	}
	if v := voters(); !v["n2"] || len(v) != 2 {
		t.Fatalf("after n2 joined: %v", v)
	}
	if out := h.ok(t, "cluster", "status"); !strings.Contains(out, "n2") || !strings.Contains(out, "leader:") {
		t.Errorf("cluster status table:\n%s", out)
	}
	h.ok(t, "cluster", "remove", "n2")
	if v := voters(); len(v) != 1 {
		t.Fatalf("after remove: %v", v)
	}
	h.ok(t, "cluster", "join", n2.URL(), "--id", "n2", "--raft", raft2, "--wait", "30s")
	testhelp.WaitFor(t, 10*time.Second, "n2 a voter again", func() bool { return voters()["n2"] })
	// A write through the leader reaches n2.
	h.ok(t, "dataset", "create", "replicated")
	testhelp.WaitFor(t, 10*time.Second, "n2 applies the write", func() bool {
		_, err := n2.Reader().Dataset("replicated")
		return err == nil
	})
	if r := h.run(t, "cluster", "join", n2.URL(), "--id", "n3"); r.code != ExitUsage {
		t.Errorf("join without --raft: exit %d", r.code)
	}
}

// TestClusterJoinToken: `cluster join-token` prints a join token and its expiry; the token
// admits a join and nothing else.
func TestClusterJoinToken(t *testing.T) {
	h := startHub(t)
	out := h.ok(t, "cluster", "join-token", "--ttl", "10m")
	var tok string
	for _, l := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(l, "join token: "); ok {
			tok = strings.TrimSpace(v)
		}
	}
	if tok == "" || !strings.Contains(out, "expires: ") {
		t.Fatalf("join-token printed %q", out)
	}
	if r := runCLI(t, map[string]string{"DRIFTLINE_HUB": h.url, "DRIFTLINE_TOKEN": tok}, "device", "list"); r.code == 0 {
		t.Fatal("a join token listed devices")
	}
	if r := h.run(t, "cluster", "join-token", "--ttl", "1000h"); r.code == 0 {
		t.Fatal("a 1000h join token was accepted")
	}
}
