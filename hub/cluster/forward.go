package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/driftline/driftline/hub/command"
)

// Paths of the cluster service: node-to-node only, outside the public API (/api/v1), served on
// the API's listener and refused to anyone who is not a cluster peer (see Handler.Authorize).
const (
	// PathApply takes one encoded command (command.Encode, the bytes of a Raft entry) and
	// applies it on the leader: ApplyResponse.
	PathApply = "/cluster/v1/apply"
	// PathReadIndex runs a barrier on the leader and answers its applied index: ReadIndexResponse.
	PathReadIndex = "/cluster/v1/read-index"
	// PathMembers takes a MemberRequest (join, promote, remove) for the leader's Service.
	PathMembers = "/cluster/v1/members"
	// PathInfo is answered by every node, leader or not: Info, what its build knows.
	PathInfo = "/cluster/v1/info"
)

// Info answers PathInfo: MaxCommand is the highest command type the node's build knows. A
// leader proposes a command type that an older node would stop at only once every node knows
// it.
type Info struct {
	MaxCommand uint16 `json:"max_command"`
}

// MaxCommandBytes bounds one command sent to PathApply (the leader refuses more with 413): above
// the largest command a handler builds (a 1 MiB batch of chunks, base64 in JSON; a dataset
// version with its reference profile) and far below what would hurt a Raft entry.
const MaxCommandBytes = 32 << 20

// ForwardTimeout bounds one forwarded call when the caller's context has no sooner deadline: a
// leader that stops answering (killed, partitioned) yields ErrUnavailable after it, never a
// hang.
const ForwardTimeout = 15 * time.Second

// Error kinds a leader reports for a forwarded call (RemoteError.Kind).
const (
	// KindNotLeader: the node called is not the leader (any more); nothing was applied.
	KindNotLeader = "not_leader"
	// KindLeadershipLost: leadership was lost after the command was proposed; it may or may
	// not have been applied (commands carry request ids, so a retry is safe).
	KindLeadershipLost = "leadership_lost"
	// KindNotFound, KindExists, KindConflict, KindInvalid are the state machine's domain
	// errors (hub/state), deterministic on every node.
	KindNotFound = "not_found"
	KindExists   = "exists"
	KindConflict = "conflict"
	KindInvalid  = "invalid"
	// KindTooBig is a command too big for one replicated transaction (the API's 413); Data
	// {"not_split":true} says the leader did not split it because a node does not know the
	// parts yet (a rolling upgrade).
	KindTooBig = "too_big"
	// KindField is a membership request refused by the Service (*FieldError; Field names it).
	KindField = "field"
	// KindNotNonvoter and KindNotMember are ErrNotNonvoter and ErrNotMember.
	KindNotNonvoter = "not_nonvoter"
	KindNotMember   = "not_member"
	// KindInternal is any other failure; its detail stays in the leader's log.
	KindInternal = "internal"
)

// RemoteError is a leader's refusal of a forwarded call, as the caller receives it. Kind says
// what it is; Detail is the leader's message for domain errors (they name no internals).
type RemoteError struct {
	Kind   string `json:"kind"`
	Field  string `json:"field,omitempty"`
	Detail string `json:"detail,omitempty"`
	// Data carries what a kind needs besides the message (a rollout conflict's rollout and
	// devices), as Handler.Describe gave it.
	Data json.RawMessage `json:"data,omitempty"`
}

func (e *RemoteError) Error() string {
	if e.Detail == "" {
		return "cluster: leader: " + e.Kind
	}
	return e.Detail
}

// Unwrap makes errors.Is work for the kinds this package has sentinels for: not-leader and
// leadership-lost are ErrUnavailable (retry), the membership kinds their errors.
func (e *RemoteError) Unwrap() error {
	switch e.Kind {
	case KindNotLeader, KindLeadershipLost:
		return ErrUnavailable
	case KindNotNonvoter:
		return ErrNotNonvoter
	case KindNotMember:
		return ErrNotMember
	case KindField:
		return &FieldError{Field: e.Field, Detail: e.Detail}
	}
	return nil
}

// ApplyResponse answers PathApply. Index is the leader's applied index once the command was
// applied (at least the command's own index): a follower that waits until it has applied Index
// reads its own write. Result is the JSON of the state machine's result (null for none).
type ApplyResponse struct {
	Index  uint64          `json:"index"`
	Result json.RawMessage `json:"result,omitempty"`
	// Replay says Result is the kept result of an earlier command with the same request id
	// (the store returns such a result as raw JSON, and so must the follower).
	Replay bool         `json:"replay,omitempty"`
	Error  *RemoteError `json:"error,omitempty"`
}

// ReadIndexResponse answers PathReadIndex: the leader's applied index after a barrier. A
// follower that has applied Index has seen every write acknowledged before the call began.
type ReadIndexResponse struct {
	Index uint64 `json:"index"`
}

// Member operations of a MemberRequest.
const (
	OpJoin    = "join"
	OpPromote = "promote"
	OpRemove  = "remove"
)

// MemberRequest asks the leader's Service for a membership change: Op is OpJoin or OpPromote
// with Join, or OpRemove with ID. The follower that received the node's join already
// authenticated its join token and validated the request; the leader's Service checks it again.
type MemberRequest struct {
	Op   string      `json:"op"`
	Join JoinRequest `json:"join,omitempty"`
	ID   string      `json:"id,omitempty"`
}

// MemberResponse answers a MemberRequest: the commit index a joining non-voter must reach.
type MemberResponse struct {
	CommitIndex uint64       `json:"commit_index"`
	Error       *RemoteError `json:"error,omitempty"`
}

// Leader is what the leader's side of the cluster service needs: the store.
type Leader interface {
	Membership
	// IsLeader reports whether this node is the leader now.
	IsLeader() bool
	// Apply proposes a command and returns the state machine's result.
	Apply(ctx context.Context, env command.Envelope) (any, error)
	// Barrier returns once the leader has applied every committed entry.
	Barrier(ctx context.Context) error
	// AppliedIndex is the index of the last entry this node applied.
	AppliedIndex() uint64
}

// ErrNotPeer is Handler.Authorize's refusal of a caller that is not a cluster peer.
var ErrNotPeer = errors.New("cluster: only a cluster peer may call the cluster service")

// Handler serves the cluster service (PathApply, PathReadIndex, PathMembers) on the leader. It
// trusts its callers completely, so Authorize must admit cluster peers only: a node presenting
// a certificate of the cluster CA, or, without a CA, a node credential. A user's token, admin
// included, never submits a raw command: the API's handlers are the only way users write.
type Handler struct {
	L Leader
	// Authorize returns nil for a cluster peer, else an error (wrapping ErrNotPeer: 403).
	Authorize func(r *http.Request) error
	// Describe classifies an error of Apply or Barrier into a Kind* constant ("" means
	// KindInternal) and the data the kind carries (may be nil).
	Describe func(error) (kind string, data json.RawMessage)
	Log      *slog.Logger
}

// ServeHTTP routes the three calls. Status: 200 with the result (or a domain error in the body),
// 401/403 for a caller that is not a peer, 503 with Retry-After when this node is not the leader
// or lost leadership during the call.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := h.Authorize(r); err != nil {
		status := http.StatusUnauthorized
		if errors.Is(err, ErrNotPeer) {
			status = http.StatusForbidden
		}
		h.write(w, status, ApplyResponse{Error: &RemoteError{Kind: KindInternal, Detail: err.Error()}})
		return
	}
	if r.Method != http.MethodPost && !(r.Method == http.MethodDelete && strings.HasPrefix(r.URL.Path, PathMembers+"/")) {
		h.write(w, http.StatusMethodNotAllowed, ApplyResponse{Error: &RemoteError{Kind: KindInvalid, Detail: "method " + r.Method}})
		return
	}
	if r.URL.Path == PathInfo {
		h.write(w, http.StatusOK, Info{MaxCommand: uint16(command.MaxType())})
		return
	}
	if !h.L.IsLeader() {
		h.unavailable(w, KindNotLeader, "this node is not the leader")
		return
	}
	switch {
	case r.URL.Path == PathApply:
		h.apply(w, r)
	case r.URL.Path == PathReadIndex:
		if err := h.L.Barrier(r.Context()); err != nil {
			h.fail(w, err)
			return
		}
		h.write(w, http.StatusOK, ReadIndexResponse{Index: h.L.AppliedIndex()})
	case r.URL.Path == PathMembers:
		h.members(w, r)
	default:
		h.write(w, http.StatusNotFound, ApplyResponse{Error: &RemoteError{Kind: KindNotFound, Detail: "no cluster call " + r.URL.Path}})
	}
}

func (h *Handler) apply(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxCommandBytes+1))
	if err != nil {
		h.write(w, http.StatusBadRequest, ApplyResponse{Error: &RemoteError{Kind: KindInvalid, Detail: "read command: " + err.Error()}})
		return
	}
	if len(body) > MaxCommandBytes {
		h.write(w, http.StatusRequestEntityTooLarge, ApplyResponse{Error: &RemoteError{Kind: KindInvalid,
			Detail: fmt.Sprintf("a forwarded command is limited to %d bytes", MaxCommandBytes)}})
		return
	}
	env, err := command.Decode(body)
	if err != nil {
		h.write(w, http.StatusBadRequest, ApplyResponse{Error: &RemoteError{Kind: KindInvalid, Detail: err.Error()}})
		return
	}
	if env.Type&^command.IgnoreIfUnknown == command.TypeBatch {
		h.write(w, http.StatusBadRequest, ApplyResponse{Error: &RemoteError{Kind: KindInvalid, Detail: "a batch is the store's to build, not a peer's"}})
		return
	}
	env.Time = 0 // the leader stamps the time when it proposes
	res, err := h.L.Apply(r.Context(), env)
	if err != nil {
		h.fail(w, err)
		return
	}
	out := ApplyResponse{Index: h.L.AppliedIndex()}
	if raw, ok := res.(json.RawMessage); ok {
		out.Result, out.Replay = raw, true
	} else if res != nil {
		if out.Result, err = json.Marshal(res); err != nil {
			h.fail(w, err)
			return
		}
	}
	h.write(w, http.StatusOK, out)
}

func (h *Handler) members(w http.ResponseWriter, r *http.Request) {
	var req MemberRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
		h.write(w, http.StatusBadRequest, MemberResponse{Error: &RemoteError{Kind: KindInvalid, Detail: "member request: " + err.Error()}})
		return
	}
	svc := Service{M: h.L}
	var out MemberResponse
	var err error
	switch req.Op {
	case OpJoin:
		var res JoinResponse
		res, err = svc.Join(r.Context(), req.Join)
		out.CommitIndex = res.CommitIndex
	case OpPromote:
		err = svc.Promote(r.Context(), req.Join)
	case OpRemove:
		err = svc.Remove(r.Context(), req.ID)
	default:
		err = &FieldError{Field: "op", Detail: "op must be join, promote or remove"}
	}
	if err != nil {
		h.fail(w, err)
		return
	}
	h.write(w, http.StatusOK, out)
}

// fail answers err: 503 for a lost leadership, else 200 with the error's kind (domain errors are
// answers, not failures of the call), or 500 for an internal one (logged here).
func (h *Handler) fail(w http.ResponseWriter, err error) {
	var fe *FieldError
	kind := ""
	var data json.RawMessage
	switch {
	case errors.As(err, &fe):
		h.write(w, http.StatusOK, ApplyResponse{Error: &RemoteError{Kind: KindField, Field: fe.Field, Detail: fe.Detail}})
		return
	case errors.Is(err, ErrNotNonvoter):
		kind = KindNotNonvoter
	case errors.Is(err, ErrNotMember):
		kind = KindNotMember
	case h.Describe != nil:
		kind, data = h.Describe(err)
	}
	switch kind {
	case KindNotLeader, KindLeadershipLost:
		h.unavailable(w, kind, err.Error())
	case "", KindInternal:
		if h.Log != nil {
			h.Log.Error("forwarded call failed", "err", err)
		}
		h.write(w, http.StatusInternalServerError, ApplyResponse{Error: &RemoteError{Kind: KindInternal}})
	default:
		h.write(w, http.StatusOK, ApplyResponse{Error: &RemoteError{Kind: kind, Detail: err.Error(), Data: data}})
	}
}

func (h *Handler) unavailable(w http.ResponseWriter, kind, detail string) {
	w.Header().Set("Retry-After", "1")
	h.write(w, http.StatusServiceUnavailable, ApplyResponse{Error: &RemoteError{Kind: kind, Detail: detail}})
}

func (h *Handler) write(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// Apply sends one command to the leader whose API is at addr (host:port) and returns its
// answer: the result JSON and the leader's applied index. token is this node's credential
// ("" with a cluster certificate, which the client presents). A domain refusal is a
// *RemoteError; a leader that does not answer, is not the leader or lost leadership is an error
// wrapping ErrUnavailable.
func (c *Client) Apply(ctx context.Context, addr, token string, env command.Envelope) (ApplyResponse, error) {
	b, err := command.Encode(env)
	if err != nil {
		return ApplyResponse{}, err
	}
	var out ApplyResponse
	if err := c.call(ctx, http.MethodPost, c.URL(addr, PathApply), token, "application/octet-stream", b, &out); err != nil {
		return ApplyResponse{}, err
	}
	if out.Error != nil {
		return out, out.Error
	}
	return out, nil
}

// ReadIndex asks the leader at addr for its applied index after a barrier (linearizable reads on
// a follower: wait until applied, then read locally).
func (c *Client) ReadIndex(ctx context.Context, addr, token string) (uint64, error) {
	var out ReadIndexResponse
	if err := c.call(ctx, http.MethodPost, c.URL(addr, PathReadIndex), token, "", nil, &out); err != nil {
		return 0, err
	}
	return out.Index, nil
}

// Info asks the node at addr what its build knows. A node of a build without the call answers
// 404: an error.
func (c *Client) Info(ctx context.Context, addr, token string) (Info, error) {
	var out Info
	err := c.call(ctx, http.MethodPost, c.URL(addr, PathInfo), token, "", nil, &out)
	return out, err
}

// Member sends a membership change to the leader at addr. A refusal by the leader's Service is
// a *RemoteError that errors.Is/As match like the Service's own (ErrNotNonvoter, ErrNotMember,
// *FieldError).
func (c *Client) Member(ctx context.Context, addr, token string, req MemberRequest) (MemberResponse, error) {
	b, err := json.Marshal(req)
	if err != nil {
		return MemberResponse{}, err
	}
	var out MemberResponse
	if err := c.call(ctx, http.MethodPost, c.URL(addr, PathMembers), token, "application/json", b, &out); err != nil {
		return MemberResponse{}, err
	}
	if out.Error != nil {
		return out, out.Error
	}
	return out, nil
}

// call is one request of the cluster service, bounded by ForwardTimeout. The answer (also an
// error's, which carries a RemoteError) is decoded into out; transport errors, 503 and an
// undecodable answer wrap ErrUnavailable, 401 ErrUnauthorized.
func (c *Client) call(ctx context.Context, method, u, token, ctype string, body []byte, out any) error {
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = ForwardTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(body))
	if err != nil {
		return err
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := (&http.Client{Transport: c.Transport}).Do(req)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	defer res.Body.Close()
	rb, err := io.ReadAll(io.LimitReader(res.Body, MaxCommandBytes+1<<20))
	if err != nil {
		return fmt.Errorf("%w: read the leader's answer: %v", ErrUnavailable, err)
	}
	switch res.StatusCode {
	case http.StatusOK:
		if err := json.Unmarshal(rb, out); err != nil {
			return fmt.Errorf("cluster: leader's answer: %w", err)
		}
		return nil
	case http.StatusServiceUnavailable:
		return fmt.Errorf("%w: %s: %s", ErrUnavailable, res.Status, strings.TrimSpace(string(rb)))
	case http.StatusUnauthorized, http.StatusForbidden:
		return fmt.Errorf("%w: %s: %s", ErrUnauthorized, res.Status, strings.TrimSpace(string(rb)))
	}
	var re ApplyResponse
	if res.StatusCode == http.StatusNotFound || res.StatusCode == http.StatusMethodNotAllowed {
		if json.Unmarshal(rb, &re) != nil || re.Error == nil {
			return fmt.Errorf("%w: %s", ErrNoService, res.Status)
		}
	}
	if json.Unmarshal(rb, &re) == nil && re.Error != nil {
		return fmt.Errorf("cluster: %s: %w", res.Status, re.Error)
	}
	return fmt.Errorf("cluster: %s: %s", res.Status, strings.TrimSpace(string(rb)))
}

// ForwardedHeader marks a request a follower relayed to the leader (Relay); a node that
// receives one and is not the leader answers 503 instead of relaying again (no loops during
// elections).
const ForwardedHeader = "X-Driftline-Forwarded"

// relayHeaders are the request headers Relay passes on: what the leader's handler reads.
var relayHeaders = []string{"Authorization", "Content-Type", "Content-Encoding", "Accept", "Idempotency-Key", "X-Request-Id"}

// Relay sends a user's request to the leader at addr, body streamed, over this client (mutual
// TLS with a cluster CA), for the few API calls only the leader can answer because they use what
// only it holds (its keys, its snapshot stream, its leadership): the caller's token travels with
// it and the leader authenticates it again. The caller must close the answer's body. There is
// no overall timeout (a backup streams for as long as it takes): ctx bounds it; an unreachable
// leader is an error wrapping ErrUnavailable.
func (c *Client) Relay(ctx context.Context, addr string, r *http.Request) (*http.Response, error) {
	u := &url.URL{Scheme: c.Scheme, Host: addr, Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: r.URL.RawQuery}
	var body io.Reader
	if r.ContentLength != 0 {
		body = r.Body
	}
	req, err := http.NewRequestWithContext(ctx, r.Method, u.String(), body)
	if err != nil {
		return nil, err
	}
	req.ContentLength = r.ContentLength
	for _, h := range relayHeaders {
		if v := r.Header.Values(h); len(v) > 0 {
			req.Header[h] = v
		}
	}
	req.Header.Set(ForwardedHeader, "1")
	res, err := (&http.Client{Transport: c.Transport}).Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return res, nil
}
