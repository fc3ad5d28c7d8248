package api

import (
	"net/http"

	"github.com/labstack/echo/v4"
)

func (s *Server) clusterStatus(c echo.Context) error {
	st := s.store.Cluster()
	st.AdvertiseMQTT = s.cfg.AdvertiseMQTT
	if st.AdvertiseMQTT == nil {
		st.AdvertiseMQTT = []string{}
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
		for _, n := range s.store.Cluster().Nodes {
			if n.ID == req.ID && n.Raft == req.Raft {
				if n.Voter {
					return c.JSON(http.StatusOK, JoinResponse{ID: req.ID, Voter: true})
				}
				known = true
			}
		}
		if !known {
			return &Error{P: Problem{Type: ProblemConflict, Title: "conflict", Status: http.StatusConflict, Field: "id",
				Detail: "node " + req.ID + " at " + req.Raft + " is not a non-voter of this cluster: join without promote first"}}
		}
		if err := s.store.Promote(ctx, req.ID, req.Raft); err != nil {
			return err
		}
		return c.JSON(http.StatusOK, JoinResponse{ID: req.ID, Voter: true})
	}
	idx, err := s.store.AddNonvoter(ctx, req.ID, req.Raft, req.HTTP)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, JoinResponse{ID: req.ID, CommitIndex: idx})
}

func (s *Server) clusterRemove(c echo.Context) error {
	id := c.Param("id")
	if err := s.store.Remove(c.Request().Context(), id); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"id": id, "removed": true})
}
