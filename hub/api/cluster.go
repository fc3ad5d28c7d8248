package api

import (
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

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

// JoinRequest asks the leader to add a node. The joiner first sends it with Promote false: the
// node becomes a non-voter and the answer says which commit index it must apply; once it has,
// the joiner sends it again with Promote true and the node becomes a voter. This keeps a slow
// joiner from stalling commits (see PITFALLS: AddVoter counts the new node in the quorum at once).
type JoinRequest struct {
	ID      string `json:"id"`
	Raft    string `json:"raft"`
	HTTP    string `json:"http"`
	Promote bool   `json:"promote,omitempty"`
}

// JoinResponse answers a JoinRequest.
type JoinResponse struct {
	ID          string `json:"id"`
	Voter       bool   `json:"voter"`
	CommitIndex uint64 `json:"commit_index"`
	// NodeToken answers a promotion: the admin token the new node calls the others with
	// (forwarded telemetry), shown this once. The join token itself admits nothing but joins.
	NodeToken string `json:"node_token,omitempty"`
}

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

// nodeToken creates the admin token a node that just became a voter calls the others with.
func (s *Server) nodeToken(c echo.Context, nodeID string) (string, error) {
	tok := NewToken()
	id := uuid.NewString()[:8]
	name := "node-" + strings.NewReplacer(":", "-", "/", "-").Replace(nodeID)
	if !state.ValidName(name) {
		name = "node-" + id
	}
	if _, err := s.apply(c, command.TypeTokenCreate, state.TokenCreate{ID: id, Name: name, Role: state.RoleAdmin, Hash: HashToken(tok)}); err != nil {
		return "", err
	}
	return tok, nil
}

func (s *Server) clusterJoin(c echo.Context) error {
	var req JoinRequest
	if err := s.decodeJSON(c, &req); err != nil {
		return err
	}
	switch {
	case req.ID == "":
		return badRequest("id", "id is required")
	case req.Raft == "":
		return badRequest("raft", "raft address is required")
	case req.HTTP == "":
		return badRequest("http", "http address is required")
	}
	ctx := c.Request().Context()
	if req.Promote {
		// Only a node that joined as a non-voter at this address may become a voter: promoting
		// an unknown or unreachable node would cost the cluster its majority.
		known := false
		voter := false
		for _, n := range s.store.Cluster().Nodes {
			if n.ID == req.ID && n.Raft == req.Raft {
				known, voter = true, n.Voter
			}
		}
		if !known {
			return &Error{P: Problem{Type: ProblemConflict, Title: "conflict", Status: http.StatusConflict, Field: "id",
				Detail: "node " + req.ID + " at " + req.Raft + " is not a non-voter of this cluster: join without promote first"}}
		}
		if !voter {
			if err := s.store.Promote(ctx, req.ID, req.Raft); err != nil {
				return err
			}
		}
		// A voter gets its node token with the answer (again on a retried promotion, whose
		// first answer may have been lost).
		tok, err := s.nodeToken(c, req.ID)
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, JoinResponse{ID: req.ID, Voter: true, NodeToken: tok})
	}
	idx, err := s.store.AddNonvoter(ctx, req.ID, req.Raft, req.HTTP)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, JoinResponse{ID: req.ID, CommitIndex: idx})
}

func (s *Server) clusterRemove(c echo.Context) error {
	id := c.Param("id")
	known := false
	for _, n := range s.store.Cluster().Nodes {
		known = known || n.ID == id
	}
	if !known {
		return &Error{P: Problem{Type: ProblemNotFound, Title: "not found", Status: http.StatusNotFound, Field: "id",
			Detail: "node " + id + " is not a member of this cluster"}}
	}
	if err := s.store.Remove(c.Request().Context(), id); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"id": id, "removed": true})
}
