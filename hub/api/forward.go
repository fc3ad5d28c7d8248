package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/driftline/driftline/hub/cluster"
	"github.com/driftline/driftline/hub/command"
	"github.com/driftline/driftline/hub/state"
	"github.com/driftline/driftline/hub/store"
)

// Writes on a follower (the way rqlite's cluster/ does it): the follower runs the handler
// itself (authentication, decoding, every check it can make on its own state) and only the
// store calls that need the leader travel, typed, over hub/cluster's client:
//   - s.propose sends the command envelope the handler built (PathApply) and gets the state
//     machine's result back; it then waits until this node has applied the leader's index, so the
//     handler's own reads after the write see it;
//   - strong reads ask the leader for its index after a barrier (PathReadIndex), wait for it and
//     read locally;
//   - membership changes go to the leader's cluster.Service (PathMembers).
//
// A few calls need what only the leader holds (leaderBound): they are relayed, body streamed,
// over the same client. docs/security.md lists what goes how.

// NodeTokenIDPrefix starts the id of every node token (the credential a node calls the cluster
// service with when there is no cluster CA). Only the hub makes such ids (promotion, a leader's
// own); POST /api/v1/tokens chooses random hex ids, so an admin cannot make a node credential.
const NodeTokenIDPrefix = "node."

// IsNodeCredential reports whether p is a node token.
func IsNodeCredential(p state.Principal) bool {
	return p.Kind == "token" && strings.HasPrefix(p.ID, NodeTokenIDPrefix)
}

// leaderOnly admits a write on any node: on the leader the handler applies locally; on a follower
// it runs locally too and its commands are forwarded (propose). Without a cluster client a
// follower answers 503.
func (s *Server) leaderOnly(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if s.store.IsLeader() {
			return next(c)
		}
		if c.Request().Header.Get(cluster.ForwardedHeader) != "" {
			return noLeader("this node was told it is the leader but is not; retry")
		}
		if s.cfg.Peers == nil {
			return noLeader("this node is not the leader and cannot forward")
		}
		if _, addr, ok := s.store.LeaderHTTP(); ok && addr != "" && !s.leaderTyped(c.Request().Context(), addr) {
			return s.leaderBound(next)(c)
		}
		return next(c)
	}
}

// typedCheckTTL is how long a follower trusts what it learnt about a leader's cluster service.
const typedCheckTTL = 10 * time.Second

type typedCheck struct {
	typed bool
	at    time.Time
}

// leaderTyped reports whether the leader at addr takes typed calls from this node: it serves the
// cluster service (a leader of an older build does not: a rolling upgrade) and admits this
// node's credential (a node whose node token predates node credentials, without a cluster CA).
// When it does not, writes are relayed as requests instead, which such a leader still takes;
// the answer is kept typedCheckTTL. An unreachable leader counts as typed (the typed call then
// answers 503).
func (s *Server) leaderTyped(ctx context.Context, addr string) bool {
	if v, ok := s.typed.Load(addr); ok && time.Since(v.(typedCheck).at) < typedCheckTTL {
		return v.(typedCheck).typed
	}
	_, err := s.cfg.Peers.Info(ctx, addr, s.peerToken())
	typed := true
	switch {
	case errors.Is(err, cluster.ErrNoService):
		typed = false
		s.log.Warn("the leader has no cluster service (an older build): relaying writes to it", "leader", addr)
	case errors.Is(err, cluster.ErrUnauthorized):
		typed = false
		s.log.Warn("the leader refuses this node's cluster credential: relaying writes to it; give this node a node token (join again) or use --tls-ca", "leader", addr)
	case err != nil:
		return true
	}
	s.typed.Store(addr, typedCheck{typed: typed, at: time.Now()})
	return typed
}

// leaderBound runs a call on the leader that needs what only the leader has: its root key (key
// rotation), its node key (the legacy signature of an approval), its snapshot stream (backup),
// its leadership (transfer). A follower relays the request, body streamed, over the cluster
// client and copies the answer; the leader authenticates the caller's token again.
func (s *Server) leaderBound(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if s.store.IsLeader() {
			return next(c)
		}
		if c.Request().Header.Get(cluster.ForwardedHeader) != "" {
			return noLeader("this node was told it is the leader but is not; retry")
		}
		addr, err := s.leaderAddr()
		if err != nil {
			return err
		}
		res, err := s.cfg.Peers.Relay(c.Request().Context(), addr, c.Request())
		if err != nil {
			s.metrics.forwarded.WithLabelValues("relay", "unavailable").Inc()
			s.log.Warn("relay to leader failed", "leader", addr, "err", err)
			return noLeader("the leader at " + addr + " did not answer; retry")
		}
		defer res.Body.Close()
		s.metrics.forwarded.WithLabelValues("relay", "ok").Inc()
		h := c.Response().Header()
		for k, v := range res.Header {
			if k == "Content-Length" || k == "Connection" || k == "Transfer-Encoding" {
				continue
			}
			h[k] = v
		}
		c.Response().WriteHeader(res.StatusCode)
		_, err = io.Copy(c.Response(), res.Body)
		if err != nil {
			s.log.Warn("relayed answer cut", "leader", addr, "err", err)
		}
		return nil
	}
}

// strongRead makes a `?consistency=strong` read linearizable: on the leader after a barrier; on
// a follower after it applied the index the leader had after its barrier (read index).
func (s *Server) strongRead(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		switch c.QueryParam("consistency") {
		case "", "default", "local":
			return next(c)
		case "strong":
		default:
			return badRequest("consistency", "consistency must be strong or local")
		}
		if !s.store.IsLeader() && s.cfg.Peers != nil {
			if _, addr, ok := s.store.LeaderHTTP(); ok && addr != "" && !s.leaderTyped(c.Request().Context(), addr) {
				return s.leaderBound(func(c echo.Context) error {
					if err := s.store.Barrier(c.Request().Context()); err != nil {
						return err
					}
					return next(c)
				})(c)
			}
		}
		if err := s.barrier(c.Request().Context()); err != nil {
			return err
		}
		return next(c)
	}
}

// barrier returns once this node has applied every write committed before the call: a Raft
// barrier on the leader, a read index from the leader on a follower.
func (s *Server) barrier(ctx context.Context) error {
	if s.store.IsLeader() {
		return s.store.Barrier(ctx)
	}
	addr, err := s.leaderAddr()
	if err != nil {
		return err
	}
	idx, err := s.cfg.Peers.ReadIndex(ctx, addr, s.peerToken())
	if err != nil {
		return s.forwardError("read_index", addr, err)
	}
	s.metrics.forwarded.WithLabelValues("read_index", "ok").Inc()
	return s.waitApplied(ctx, idx)
}

// leaderAddr is the leader's HTTP address, or a 503 problem when this node cannot forward.
func (s *Server) leaderAddr() (string, error) {
	if s.cfg.Peers == nil {
		return "", noLeader("this node is not the leader and cannot forward")
	}
	_, addr, ok := s.store.LeaderHTTP()
	if !ok || addr == "" {
		return "", noLeader("no leader is known; the cluster is electing one")
	}
	return addr, nil
}

func (s *Server) peerToken() string {
	if s.cfg.PeerToken == nil {
		return ""
	}
	return s.cfg.PeerToken()
}

// propose applies env: on the leader through the store, on a follower by sending it to the
// leader (PathApply). The result has the type the state machine returned (forwardedResult), so
// a handler cannot tell where it ran; afterwards this node has applied the write.
func (s *Server) propose(ctx context.Context, env command.Envelope) (any, error) {
	if s.store.IsLeader() || s.cfg.Peers == nil {
		return s.store.Apply(ctx, env)
	}
	addr, err := s.leaderAddr()
	if err != nil {
		return nil, err
	}
	out, err := s.cfg.Peers.Apply(ctx, addr, s.peerToken(), env)
	if err != nil {
		return nil, s.forwardError("apply", addr, err)
	}
	s.metrics.forwarded.WithLabelValues("apply", "ok").Inc()
	if err := s.waitApplied(ctx, out.Index); err != nil {
		return nil, err
	}
	return forwardedResult(env, out)
}

// appliedWait bounds how long a follower waits to apply the leader's index after a forwarded
// write before it answers anyway (the write is done; only its own reads could be stale).
const appliedWait = 10 * time.Second

// waitApplied waits until this node applied index (read-your-writes after a forwarded write, and
// the read index of a strong read).
func (s *Server) waitApplied(ctx context.Context, index uint64) error {
	ctx, cancel := context.WithTimeout(ctx, appliedWait)
	defer cancel()
	if err := s.store.WaitApplied(ctx, index); err != nil {
		return noLeader(fmt.Sprintf("this node has not applied index %d yet; retry", index))
	}
	return nil
}

// forwardError turns a failed cluster call into the answer the client gets: the leader's domain
// refusal as if this node had made it, a retryable 503 (Retry-After) for a leader that is gone,
// changed or not answering, and a logged 500 for the rest.
func (s *Server) forwardError(call, addr string, err error) error {
	var re *cluster.RemoteError
	if errors.As(err, &re) {
		if e := domainError(re); e != nil {
			s.metrics.forwarded.WithLabelValues(call, "refused").Inc()
			return e
		}
	}
	switch {
	case errors.Is(err, cluster.ErrUnavailable):
		s.metrics.forwarded.WithLabelValues(call, "unavailable").Inc()
		s.log.Warn("forward to leader failed", "call", call, "leader", addr, "err", err)
		return noLeader("the leader at " + addr + " did not take the write (leadership changed or it is unreachable); retry")
	case errors.Is(err, cluster.ErrUnauthorized):
		s.metrics.forwarded.WithLabelValues(call, "unauthorized").Inc()
		s.log.Error("the leader refused this node's cluster credential", "call", call, "leader", addr, "err", err)
		return problem(http.StatusBadGateway, ProblemInternal, "cluster credential refused",
			"the leader refused this node's cluster credential (node token or certificate); see docs/security.md")
	}
	s.metrics.forwarded.WithLabelValues(call, "error").Inc()
	return fmt.Errorf("forward %s to the leader at %s: %w", call, addr, err)
}

// remoteDomainErr is a leader's domain refusal: the leader's message, matching the state
// sentinel it came from (errors.Is), so the problem mapping is the leader's own.
type remoteDomainErr struct {
	msg      string
	sentinel error
}

func (e *remoteDomainErr) Error() string { return e.msg }
func (e *remoteDomainErr) Unwrap() error { return e.sentinel }

// domainError rebuilds a leader's domain refusal; nil for kinds that are not one.
func domainError(re *cluster.RemoteError) error {
	var sentinel error
	switch re.Kind {
	case cluster.KindNotFound:
		sentinel = state.ErrNotFound
	case cluster.KindExists:
		sentinel = state.ErrExists
	case cluster.KindInvalid:
		sentinel = state.ErrInvalid
	case cluster.KindConflict:
		var ce state.ConflictError
		if len(re.Data) > 0 && json.Unmarshal(re.Data, &ce) == nil && ce.Rollout != "" {
			return &ce
		}
		sentinel = state.ErrConflict
	case cluster.KindTooBig:
		sentinel = store.ErrCommandTooBig
		var d tooBigData
		if len(re.Data) > 0 && json.Unmarshal(re.Data, &d) == nil && d.NotSplit {
			sentinel = errors.Join(store.ErrCommandTooBig, store.ErrNotSplit)
		}
	case cluster.KindField, cluster.KindNotNonvoter, cluster.KindNotMember:
		return re // membershipError matches these like the Service's own
	default:
		return nil
	}
	return &remoteDomainErr{msg: re.Detail, sentinel: sentinel}
}

// tooBigData is the Data of a cluster.KindTooBig refusal.
type tooBigData struct {
	NotSplit bool `json:"not_split,omitempty"`
}

// describeError classifies an error of the leader's store for the cluster service (what a
// follower rebuilds with domainError).
func (s *Server) describeError(err error) (string, json.RawMessage) {
	var ce *state.ConflictError
	switch {
	case errors.As(err, &ce):
		b, _ := json.Marshal(ce)
		return cluster.KindConflict, b
	case errors.Is(err, state.ErrNotFound):
		return cluster.KindNotFound, nil
	case errors.Is(err, state.ErrExists):
		return cluster.KindExists, nil
	case errors.Is(err, state.ErrConflict):
		return cluster.KindConflict, nil
	case errors.Is(err, state.ErrInvalid):
		return cluster.KindInvalid, nil
	case errors.Is(err, store.ErrCommandTooBig):
		b, _ := json.Marshal(tooBigData{NotSplit: errors.Is(err, store.ErrNotSplit)})
		return cluster.KindTooBig, b
	case s.store.IsNotLeader(err):
		return cluster.KindLeadershipLost, nil
	}
	return cluster.KindInternal, nil
}

// forwardedResult decodes a forwarded command's result into the type the state machine returns
// for env's type (resultTypes), so handlers' type assertions hold on a follower as on the
// leader. A replayed request (its result kept by request id) stays json.RawMessage, as the
// store returns it on the leader; so does a type with no entry (handlers pass those through).
func forwardedResult(env command.Envelope, out cluster.ApplyResponse) (any, error) {
	if len(out.Result) == 0 || string(out.Result) == "null" {
		return nil, nil
	}
	if out.Replay {
		return json.RawMessage(out.Result), nil
	}
	mk, ok := resultTypes[env.Type&^command.IgnoreIfUnknown]
	if !ok {
		return json.RawMessage(out.Result), nil
	}
	res, err := mk(out.Result)
	if err != nil {
		return nil, fmt.Errorf("decode the leader's result of command type %d: %w", uint16(env.Type), err)
	}
	if env.Type == command.TypeDeviceRekey { // the hash is not in the JSON; a rekey's result has the command's
		if d, ok := res.(state.Device); ok {
			var c state.DeviceRekey
			if env.DecodePayload(&c) == nil {
				d.TokenHash = c.TokenHash
				res = d
			}
		}
	}
	return res, nil
}

// decodeAs returns a decoder of T.
func decodeAs[T any]() func(json.RawMessage) (any, error) {
	return func(b json.RawMessage) (any, error) {
		var v T
		if err := json.Unmarshal(b, &v); err != nil {
			return nil, err
		}
		return v, nil
	}
}

// resultTypes are the result types of the commands whose results handlers inspect by type (the
// others are passed through as JSON, which a json.RawMessage does unchanged).
var resultTypes = map[command.Type]func(json.RawMessage) (any, error){
	command.TypeTokenCreate:           decodeAs[state.Token](),
	command.TypeTokenDelete:           decodeAs[state.Token](),
	command.TypeDeviceCreate:          decodeAs[state.Device](),
	command.TypeDevicePatch:           decodeAs[state.Device](),
	command.TypeDeviceDelete:          decodeAs[state.Device](),
	command.TypeDeviceRekey:           decodeAs[state.Device](),
	command.TypeModelVersionCreate:    decodeAs[state.ModelVersion](),
	command.TypeModelVersionApprove:   decodeAs[state.ModelVersion](),
	command.TypeModelVersionDeprecate: decodeAs[state.ModelVersion](),
	command.TypeDatasetVersionCreate:  decodeAs[state.DatasetVersion](),
	command.TypeWebhookCreate:         decodeAs[state.Webhook](),
	command.TypeWebhookDelete:         decodeAs[state.Webhook](),
	command.TypeWebhookTest:           decodeAs[state.WebhookDelivery](),
	command.TypeChunksPut:             decodeAs[state.ChunkPutResult](),
	command.TypeChunksSweep:           decodeAs[state.ChunksSwept](),
}

// clusterService is the leader's side of the cluster service, mounted at /cluster/v1/.
func (s *Server) clusterService() *cluster.Handler {
	return &cluster.Handler{L: leaderStore{s.store}, Authorize: s.authorizePeer, Describe: s.describeError, Log: s.log}
}

// leaderStore is the Store as the cluster service's Leader.
type leaderStore struct{ Store }

func (l leaderStore) Members() []cluster.Member { return storeMembership{l.Store}.Members() }

// authorizePeer admits cluster peers only. With a cluster CA: a client certificate the CA signed
// (the API's TLS asks for one; a token, admin or node, is not enough). Without one: a node token
// (IsNodeCredential); an admin token is refused (403), whatever else it may do.
func (s *Server) authorizePeer(r *http.Request) error {
	if s.cfg.ClusterTLS != nil {
		if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
			return fmt.Errorf("%w: present a certificate of the cluster CA", cluster.ErrNotPeer)
		}
		if err := s.cfg.ClusterTLS.VerifyPeer(r.TLS.PeerCertificates); err != nil {
			return fmt.Errorf("%w: %v", cluster.ErrNotPeer, err)
		}
		return nil
	}
	tok, ok := strings.CutPrefix(r.Header.Get(echo.HeaderAuthorization), "Bearer ")
	if !ok || strings.TrimSpace(tok) == "" {
		return errors.New("send Authorization: Bearer NODE-TOKEN")
	}
	p, err := s.read.PrincipalByTokenHash(HashToken(strings.TrimSpace(tok)))
	if err != nil {
		return errors.New("unknown or revoked token")
	}
	if p.ExpiresAt != 0 && time.Now().UnixMilli() >= p.ExpiresAt {
		return errors.New("token expired")
	}
	if !IsNodeCredential(p) {
		return fmt.Errorf("%w: %s is not a node credential", cluster.ErrNotPeer, p.Name)
	}
	return nil
}
