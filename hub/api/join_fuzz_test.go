package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/driftline/driftline/hub/command"
	"github.com/driftline/driftline/hub/state"
)

// joinStore records the membership calls the join handler makes. The fuzz target below cannot
// run against a real node: an input that decodes to {"promote": true, ...} would add a voter
// that does not exist and cost the one-node cluster its quorum (see the report on Promote). The
// Store methods the handler does not call are left to the embedded nil interface, so calling
// one panics and fails the target.
type joinStore struct {
	Store
	calls  []JoinRequest
	tokens int // node tokens created
}

func (s *joinStore) AddNonvoter(_ context.Context, id, raftAddr, httpAddr string) (uint64, error) {
	s.calls = append(s.calls, JoinRequest{ID: id, Raft: raftAddr, HTTP: httpAddr})
	return 7, nil
}

func (s *joinStore) Promote(_ context.Context, id, raftAddr string) error {
	s.calls = append(s.calls, JoinRequest{ID: id, Raft: raftAddr, Promote: true})
	return nil
}

func (s *joinStore) IsNotLeader(error) bool { return false }

// IsLeader: the handler runs on the leader (a follower forwards to the leader's Service).
func (s *joinStore) IsLeader() bool { return true }

// Apply takes the node token a promotion creates (TokenCreate); any other command fails the test.
func (s *joinStore) Apply(_ context.Context, env command.Envelope) (any, error) {
	if env.Type != command.TypeTokenCreate {
		return nil, errors.New("the join handler applied a command other than the node token")
	}
	s.tokens++
	return state.Token{}, nil
}

// Cluster has n2 as a non-voter at 127.0.0.1:7001: only its promotion reaches the store.
func (s *joinStore) Cluster() ClusterStatus {
	return ClusterStatus{Self: "n1", Nodes: []NodeStatus{
		{ID: "n1", Raft: "127.0.0.1:7000", Voter: true},
		{ID: "n2", Raft: "127.0.0.1:7001", Voter: false},
	}}
}

// TestPromoteOnlyKnownNonVoters: promoting a node that did not join as a non-voter at that
// address is refused, so one bad request cannot cost the cluster its majority.
func TestPromoteOnlyKnownNonVoters(t *testing.T) {
	for _, c := range []struct {
		body string
		want int
	}{
		{`{"id":"n2","raft":"127.0.0.1:7001","http":"h","promote":true}`, http.StatusOK},
		{`{"id":"ghost","raft":"127.0.0.1:1","http":"x","promote":true}`, http.StatusConflict},
		{`{"id":"n2","raft":"127.0.0.1:9999","http":"h","promote":true}`, http.StatusConflict},
	} {
		st := &joinStore{}
		s := New(Config{Store: st})
		req := httptest.NewRequest(http.MethodPost, "/api/v1/cluster/join", strings.NewReader(c.body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		ctx := s.echo.NewContext(req, rec)
		if err := s.clusterJoin(ctx); err != nil {
			s.errorHandler(err, ctx)
		}
		if rec.Code != c.want || (c.want != http.StatusOK && len(st.calls) != 0) {
			t.Fatalf("%s: got %d (%d store calls), want %d", c.body, rec.Code, len(st.calls), c.want)
		}
	}
}

// FuzzJoinRequest feeds the body of POST /api/v1/cluster/join to the real handler: it never
// panics, answers 200 or a 4xx problem, and reaches the store only with an id and both
// addresses.
func FuzzJoinRequest(f *testing.F) {
	for _, s := range []string{
		`{"id":"n2","raft":"127.0.0.1:7001","http":"127.0.0.1:8081"}`,
		`{"id":"n2","raft":"127.0.0.1:7001","http":"127.0.0.1:8081","promote":true}`,
		`{"id":"n2"}`, `{"raft":"x","http":"y"}`, `{"id":1}`, `{"id":"n","raft":"r","http":"h","extra":1}`,
		``, `null`, `[]`, `{`, `{"id":"n","raft":"r","http":"h"} {}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		st := &joinStore{}
		s := New(Config{Store: st})
		req := httptest.NewRequest(http.MethodPost, "/api/v1/cluster/join", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		c := s.echo.NewContext(req, rec)
		if err := s.clusterJoin(c); err != nil {
			s.errorHandler(err, c)
		}
		switch {
		case rec.Code == http.StatusOK:
			var out JoinResponse
			if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
				t.Fatalf("200 with %q: %v", rec.Body.Bytes(), err)
			}
			if len(st.calls) != 1 {
				t.Fatalf("200 after %d store calls", len(st.calls))
			}
			c := st.calls[0]
			if c.ID == "" || c.Raft == "" || (!c.Promote && c.HTTP == "") {
				t.Fatalf("store called with %+v", c)
			}
		case rec.Code >= 400 && rec.Code < 500:
			if len(st.calls) != 0 {
				t.Fatalf("%d after the store was called: %+v", rec.Code, st.calls)
			}
			var p Problem
			if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil || !strings.HasPrefix(p.Type, ProblemBase) {
				t.Fatalf("%d with a bad problem %q", rec.Code, rec.Body.Bytes())
			}
		default:
			t.Fatalf("status %d: %s", rec.Code, rec.Body.Bytes())
		}
	})
}
