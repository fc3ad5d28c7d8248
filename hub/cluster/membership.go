package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// JoinRequest asks the leader to add a node (POST /api/v1/cluster/join). The joiner first sends
// it with Promote false: the node becomes a non-voter and the answer says which commit index it
// must apply; once it has, the joiner sends it again with Promote true and the node becomes a
// voter. This keeps a slow joiner from stalling commits (see PITFALLS: AddVoter counts the new
// node in the quorum at once).
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
	// SealKey answers a promotion too: the cluster's seal key (hub/seal), which every node needs
	// to open the secrets stored sealed (webhook secrets); empty when the leader holds none.
	SealKey string `json:"seal_key,omitempty"`
}

// Member is one server of the Raft configuration as Membership reports it.
type Member struct {
	ID, Raft string
	Voter    bool
}

// Membership is what the leader's store does for membership changes (hub/store).
type Membership interface {
	// Members lists the servers of the Raft configuration.
	Members() []Member
	// AddNonvoter adds a node as a non-voter and returns the commit index it must reach.
	AddNonvoter(ctx context.Context, id, raftAddr, httpAddr string) (uint64, error)
	// Promote makes a caught-up non-voter a voter.
	Promote(ctx context.Context, id, raftAddr string) error
	// Remove takes a node out of the configuration.
	Remove(ctx context.Context, id string) error
}

// FieldError is a request the Service refuses before it reaches the store: Field names the bad
// field of the JoinRequest.
type FieldError struct{ Field, Detail string }

func (e *FieldError) Error() string { return "cluster: " + e.Field + ": " + e.Detail }

var (
	// ErrNotNonvoter refuses a promotion of a node that did not join as a non-voter at that
	// Raft address.
	ErrNotNonvoter = errors.New("not a non-voter of this cluster: join without promote first")
	// ErrNotMember refuses the removal of a node that is not in the configuration.
	ErrNotMember = errors.New("not a member of this cluster")
)

// Service carries out membership calls on the leader: the API's cluster handlers call it with
// the request a peer's Client sent.
type Service struct{ M Membership }

// Join validates req and adds the node as a non-voter (req.Promote must be false: see Promote).
func (s Service) Join(ctx context.Context, req JoinRequest) (JoinResponse, error) {
	if err := validJoin(req); err != nil {
		return JoinResponse{}, err
	}
	if req.Promote {
		return JoinResponse{}, &FieldError{"promote", "Join adds a non-voter; promotion is Promote"}
	}
	idx, err := s.M.AddNonvoter(ctx, req.ID, req.Raft, req.HTTP)
	if err != nil {
		return JoinResponse{}, err
	}
	return JoinResponse{ID: req.ID, CommitIndex: idx}, nil
}

// Promote makes the node a voter. Only a node that joined as a non-voter at this address may
// become one: promoting an unknown or unreachable node would cost the cluster its majority.
// Promoting a voter again succeeds without a change (a retried promotion whose first answer
// was lost). The error wraps ErrNotNonvoter for an unknown node.
func (s Service) Promote(ctx context.Context, req JoinRequest) error {
	if err := validJoin(req); err != nil {
		return err
	}
	known, voter := false, false
	for _, m := range s.M.Members() {
		if m.ID == req.ID && m.Raft == req.Raft {
			known, voter = true, m.Voter
		}
	}
	if !known {
		return fmt.Errorf("node %s at %s is %w", req.ID, req.Raft, ErrNotNonvoter)
	}
	if voter {
		return nil
	}
	return s.M.Promote(ctx, req.ID, req.Raft)
}

// Remove takes node id out of the cluster; the error wraps ErrNotMember for an unknown id.
func (s Service) Remove(ctx context.Context, id string) error {
	known := false
	for _, m := range s.M.Members() {
		known = known || m.ID == id
	}
	if !known {
		return fmt.Errorf("node %s is %w", id, ErrNotMember)
	}
	return s.M.Remove(ctx, id)
}

// ValidateJoin checks what a JoinRequest must carry (the checks Join and Promote make first), so
// that a follower refuses a bad request before it forwards it.
func ValidateJoin(req JoinRequest) error { return validJoin(req) }

func validJoin(req JoinRequest) error {
	switch {
	case req.ID == "":
		return &FieldError{"id", "id is required"}
	case req.Raft == "":
		return &FieldError{"raft", "raft address is required"}
	case req.HTTP == "":
		return &FieldError{"http", "http address is required"}
	}
	return nil
}

// Join sends req to the node whose API is at base (an http(s):// URL, the --join flag) with the
// join token, retried while retry says the error may pass (nil: while the peer is
// unavailable). With req.Promote it asks for the promotion.
func (c *Client) Join(ctx context.Context, base, token string, req JoinRequest, retry func(error) bool) (JoinResponse, error) {
	if retry == nil {
		retry = func(err error) bool { return errors.Is(err, ErrUnavailable) }
	}
	var out JoinResponse
	err := c.PostRetryWhile(ctx, strings.TrimRight(base, "/")+"/api/v1/cluster/join", token, req, &out, retry)
	return out, err
}

// Remove asks the node whose API is at base (an http(s):// URL) to take node id out of the
// cluster, with an admin token.
func (c *Client) Remove(ctx context.Context, base, token, id string) error {
	return c.do(ctx, http.MethodDelete, strings.TrimRight(base, "/")+"/api/v1/cluster/nodes/"+url.PathEscape(id), token, nil, nil)
}
