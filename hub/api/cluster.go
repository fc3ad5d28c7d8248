package api

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/driftline/driftline/hub/cluster"
	"github.com/driftline/driftline/hub/command"
	"github.com/driftline/driftline/hub/state"
	"github.com/driftline/driftline/shared/wire"
)

func (s *Server) clusterStatus(c echo.Context) error {
	st := s.store.Cluster()
	st.AdvertiseMQTT = s.cfg.AdvertiseMQTT
	if st.AdvertiseMQTT == nil {
		st.AdvertiseMQTT = []string{}
	}
	st.TopicPrefix = s.cfg.TopicPrefix
	if st.TopicPrefix == "" {
		st.TopicPrefix = wire.DefaultPrefix
	}
	return c.JSON(http.StatusOK, st)
}

// StateDigest is the answer of GET /api/v1/cluster/digest: a hash of the replicated state as this
// node holds it, at the index it has applied. Two nodes at the same applied index have the same
// digest unless they diverged (the fault-injection harness compares them).
type StateDigest struct {
	AppliedIndex uint64 `json:"applied_index"`
	Digest       string `json:"digest"`
	Keys         int    `json:"keys"`
}

// Digester is a Store that can hash its state.
type Digester interface {
	StateDigest() (StateDigest, error)
}

func (s *Server) clusterDigest(c echo.Context) error {
	d, ok := s.store.(Digester)
	if !ok {
		return echo.NewHTTPError(http.StatusNotImplemented, "this store cannot hash its state")
	}
	out, err := d.StateDigest()
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, out)
}

// JoinRequest asks the leader to add a node; see cluster.JoinRequest.
type JoinRequest = cluster.JoinRequest

// JoinResponse answers a JoinRequest; see cluster.JoinResponse.
type JoinResponse = cluster.JoinResponse

// JoinTokenRequest is the body of POST /api/v1/cluster/join-tokens.
type JoinTokenRequest struct {
	// TTLSeconds is how long the token works; 0 means DefaultJoinTokenTTL.
	TTLSeconds int64 `json:"ttl_seconds,omitempty"`
}

// Join token lifetimes.
const (
	DefaultJoinTokenTTL = time.Hour
	MaxJoinTokenTTL     = 7 * 24 * time.Hour
)

// clusterJoinToken creates a join token: it admits POST /api/v1/cluster/join only (no read, no
// other write), and stops working after its TTL. Give it to the node that joins instead of an
// admin token.
func (s *Server) clusterJoinToken(c echo.Context) error {
	var req JoinTokenRequest
	if err := s.decodeJSON(c, &req); err != nil {
		return err
	}
	ttl := time.Duration(req.TTLSeconds) * time.Second
	switch {
	case req.TTLSeconds == 0:
		ttl = DefaultJoinTokenTTL
	case req.TTLSeconds < 0 || ttl > MaxJoinTokenTTL:
		return badRequest("ttl_seconds", "ttl_seconds must be within 1..%d", int64(MaxJoinTokenTTL/time.Second))
	}
	tok := NewToken()
	id := uuid.NewString()[:8]
	res, err := s.apply(c, command.TypeTokenCreate, state.TokenCreate{ID: id, Name: "join-" + id, Role: state.RoleJoin,
		Hash: HashToken(tok), ExpiresAt: time.Now().Add(ttl).UnixMilli()})
	if err != nil {
		return err
	}
	t, ok := res.(state.Token)
	if !ok {
		return problem(http.StatusConflict, ProblemExists, "already exists", "this request already created a token")
	}
	return c.JSON(http.StatusCreated, TokenCreated{ID: t.ID, Name: t.Name, Role: t.Role, CreatedAt: t.CreatedAt, ExpiresAt: t.ExpiresAt, Token: tok})
}

// nodeToken creates the token a node that just became a voter calls the others with: an admin
// token whose id starts with NodeTokenIDPrefix, which makes it a node credential for the
// cluster service (IsNodeCredential).
func (s *Server) nodeToken(c echo.Context, nodeID string) (string, error) {
	tok := NewToken()
	id := NodeTokenIDPrefix + uuid.NewString()[:8]
	name := "node-" + strings.NewReplacer(":", "-", "/", "-").Replace(nodeID)
	if !state.ValidName(name) {
		name = "node-" + id[len(NodeTokenIDPrefix):]
	}
	if _, err := s.apply(c, command.TypeTokenCreate, state.TokenCreate{ID: id, Name: name, Role: state.RoleAdmin, Hash: HashToken(tok)}); err != nil {
		return "", err
	}
	return tok, nil
}

// membership is the cluster.Service over this server's store: join, promotion and removal
// are carried out by hub/cluster, the handlers only translate HTTP.
func (s *Server) membership() cluster.Service { return cluster.Service{M: storeMembership{s.store}} }

// storeMembership is the Store seen as cluster.Membership.
type storeMembership struct{ Store }

func (m storeMembership) Members() []cluster.Member {
	nodes := m.Cluster().Nodes
	out := make([]cluster.Member, len(nodes))
	for i, n := range nodes {
		out[i] = cluster.Member{ID: n.ID, Raft: n.Raft, Voter: n.Voter}
	}
	return out
}

// membershipError turns the Service's refusals into problems; other errors pass through.
func membershipError(err error) error {
	var fe *cluster.FieldError
	switch {
	case errors.As(err, &fe):
		return badRequest(fe.Field, "%s", fe.Detail)
	case errors.Is(err, cluster.ErrNotNonvoter):
		return &Error{P: Problem{Type: ProblemConflict, Title: "conflict", Status: http.StatusConflict, Field: "id", Detail: err.Error()}}
	case errors.Is(err, cluster.ErrNotMember):
		return &Error{P: Problem{Type: ProblemNotFound, Title: "not found", Status: http.StatusNotFound, Field: "id", Detail: err.Error()}}
	}
	return err
}

func (s *Server) clusterJoin(c echo.Context) error {
	var req JoinRequest
	if err := s.decodeJSON(c, &req); err != nil {
		return err
	}
	ctx := c.Request().Context()
	if err := cluster.ValidateJoin(req); err != nil {
		return membershipError(err)
	}
	op := cluster.OpJoin
	if req.Promote {
		op = cluster.OpPromote
	}
	res, err := s.member(ctx, cluster.MemberRequest{Op: op, Join: req})
	if err != nil {
		return membershipError(err)
	}
	if req.Promote {
		// A voter gets its node token with the answer (again on a retried promotion, whose
		// first answer may have been lost).
		tok, err := s.nodeToken(c, req.ID)
		if err != nil {
			return err
		}
		resp := JoinResponse{ID: req.ID, Voter: true, NodeToken: tok}
		if s.cfg.SealKey != nil {
			resp.SealKey = s.cfg.SealKey()
		}
		return c.JSON(http.StatusOK, resp)
	}
	return c.JSON(http.StatusOK, JoinResponse{ID: req.ID, CommitIndex: res.CommitIndex})
}

func (s *Server) clusterRemove(c echo.Context) error {
	id := c.Param("id")
	if _, err := s.member(c.Request().Context(), cluster.MemberRequest{Op: cluster.OpRemove, ID: id}); err != nil {
		return membershipError(err)
	}
	return c.JSON(http.StatusOK, map[string]any{"id": id, "removed": true})
}

// member carries out a membership change with cluster.Service: on the leader over the store, on
// a follower by sending it to the leader's Service (PathMembers), which checks it against the
// authoritative configuration.
func (s *Server) member(ctx context.Context, req cluster.MemberRequest) (cluster.MemberResponse, error) {
	if s.store.IsLeader() || s.cfg.Peers == nil {
		svc := s.membership()
		switch req.Op {
		case cluster.OpJoin:
			res, err := svc.Join(ctx, req.Join)
			return cluster.MemberResponse{CommitIndex: res.CommitIndex}, err
		case cluster.OpPromote:
			return cluster.MemberResponse{}, svc.Promote(ctx, req.Join)
		default:
			return cluster.MemberResponse{}, svc.Remove(ctx, req.ID)
		}
	}
	addr, err := s.leaderAddr()
	if err != nil {
		return cluster.MemberResponse{}, err
	}
	res, err := s.cfg.Peers.Member(ctx, addr, s.peerToken(), req)
	if err != nil {
		var re *cluster.RemoteError
		if errors.As(err, &re) && re.Unwrap() != nil && !errors.Is(err, cluster.ErrUnavailable) {
			s.metrics.forwarded.WithLabelValues("member", "refused").Inc()
			return res, err
		}
		return res, s.forwardError("member", addr, err)
	}
	s.metrics.forwarded.WithLabelValues("member", "ok").Inc()
	return res, nil
}
