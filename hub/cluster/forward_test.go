package cluster_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/driftline/driftline/hub/cluster"
	"github.com/driftline/driftline/hub/command"
	"github.com/driftline/driftline/hub/state"
	"github.com/driftline/driftline/hub/store"
	"github.com/driftline/driftline/hub/store/storetest"
)

// leaderOf is a real store as the cluster service's Leader.
type leaderOf struct{ *store.Store }

func (l leaderOf) Members() []cluster.Member {
	var out []cluster.Member
	for _, n := range l.Status().Nodes {
		out = append(out, cluster.Member{ID: n.ID, Raft: n.Raft, Voter: n.Voter})
	}
	return out
}

// serve runs the cluster service of a node, admitting every caller (who may call it is hub/api's
// authorizePeer, tested on real nodes), and returns its host:port.
func serve(t *testing.T, s *store.Store, authorize func(*http.Request) error) string {
	t.Helper()
	if authorize == nil {
		authorize = func(*http.Request) error { return nil }
	}
	h := &cluster.Handler{L: leaderOf{s}, Authorize: authorize, Describe: func(err error) (string, json.RawMessage) {
		if errors.Is(err, state.ErrExists) {
			return cluster.KindExists, nil
		}
		return "", nil
	}}
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	return strings.TrimPrefix(ts.URL, "http://")
}

// TestClusterServiceContracts: against the real store of a three-node cluster, the service
// applies a raw command with the leader's time and answers its index; a repeated request id is
// a replay; a domain refusal is a typed error; a batch is refused; a follower answers 503 with
// Retry-After (the client's error is ErrUnavailable) but still answers Info; a caller refused by
// Authorize gets ErrUnauthorized.
func TestClusterServiceContracts(t *testing.T) {
	c := storetest.MakeCluster(t, 3, func(string) store.Processor { return state.Processor{} },
		storetest.Options{Tune: storetest.FastTimeouts})
	lead := c.Leader()
	var follower *storetest.Node
	for _, n := range c.Nodes() {
		if n != lead {
			follower = n
		}
	}
	cl := cluster.NewClient(nil, false)
	ctx := context.Background()
	leader := serve(t, lead.Store, nil)

	env, _ := command.New(command.TypeTokenCreate, "req-1", 12345, "tester",
		state.TokenCreate{ID: "t1", Name: "t1", Role: state.RoleViewer, Hash: "h1"})
	out, err := cl.Apply(ctx, leader, "", env)
	if err != nil {
		t.Fatal(err)
	}
	var tok state.Token
	if err := json.Unmarshal(out.Result, &tok); err != nil || tok.ID != "t1" || out.Replay {
		t.Fatalf("result %s (%v), replay %v", out.Result, err, out.Replay)
	}
	if tok.CreatedAt == 12345 {
		t.Fatal("the peer's time was applied: the leader stamps its own")
	}
	if out.Index == 0 || out.Index > lead.Store.Status().AppliedIndex {
		t.Fatalf("index %d, leader applied %d", out.Index, lead.Store.Status().AppliedIndex)
	}
	if again, err := cl.Apply(ctx, leader, "", env); err != nil || !again.Replay {
		t.Fatalf("the same request id again: %+v %v, want a replay", again, err)
	}
	dup, _ := command.New(command.TypeTokenCreate, "", 0, "tester", state.TokenCreate{ID: "t1", Name: "t1", Role: state.RoleViewer, Hash: "h2"})
	_, err = cl.Apply(ctx, leader, "", dup)
	var re *cluster.RemoteError
	if !errors.As(err, &re) || re.Kind != cluster.KindExists {
		t.Fatalf("a duplicate token: %v, want kind exists", err)
	}
	batch, _ := command.New(command.TypeBatch, "", 0, "tester", command.Batch{})
	if _, err := cl.Apply(ctx, leader, "", batch); err == nil || !strings.Contains(err.Error(), "400") {
		t.Fatalf("a batch from a peer: %v, want 400", err)
	}

	fol := serve(t, follower.Store, nil)
	res, err := http.Post("http://"+fol+cluster.PathApply, "application/octet-stream", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusServiceUnavailable || res.Header.Get("Retry-After") == "" {
		t.Fatalf("follower: %d, Retry-After %q", res.StatusCode, res.Header.Get("Retry-After"))
	}
	if _, err := cl.Apply(ctx, fol, "", env); !errors.Is(err, cluster.ErrUnavailable) {
		t.Fatalf("apply on a follower: %v, want ErrUnavailable", err)
	}
	if info, err := cl.Info(ctx, fol, ""); err != nil || info.MaxCommand != uint16(command.MaxType()) {
		t.Fatalf("info on a follower: %+v %v", info, err)
	}
	if idx, err := cl.ReadIndex(ctx, leader, ""); err != nil || idx < out.Index {
		t.Fatalf("read index %d (%v), want at least %d", idx, err, out.Index)
	}

	refused := serve(t, lead.Store, func(*http.Request) error { return fmt.Errorf("%w: test", cluster.ErrNotPeer) })
	if _, err := cl.Apply(ctx, refused, "", env); !errors.Is(err, cluster.ErrUnauthorized) || !strings.Contains(err.Error(), "403") {
		t.Fatalf("a refused caller: %v, want 403 ErrUnauthorized", err)
	}
}
