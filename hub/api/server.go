// Package api is the hub's HTTP API (echo): routes, authentication by bearer token, role checks,
// problem+json errors, and forwarding of writes from followers to the leader.
//
// Reads are answered from the local FSM; `?consistency=strong` makes a read linearizable (a
// barrier on the leader; a follower waits for the leader's read index). A write on a follower
// runs its handler there and sends the command it builds to the leader over hub/cluster's
// client (forward.go), so clients never chase the leader.
package api

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/driftline/driftline/hub/cluster"
	"github.com/driftline/driftline/hub/command"
	"github.com/driftline/driftline/hub/keys"
	"github.com/driftline/driftline/hub/state"
)

// Store is what the API needs from the replicated store.
type Store interface {
	// Apply proposes a command and returns its result; on a follower it fails with an error
	// that Store.IsNotLeader recognises.
	Apply(ctx context.Context, env command.Envelope) (any, error)
	// Barrier returns once this node (the leader) has applied every committed entry.
	Barrier(ctx context.Context) error
	// IsLeader reports whether this node is the leader now.
	IsLeader() bool
	// LeaderHTTP returns the leader's id and HTTP address, if known.
	LeaderHTTP() (id, httpAddr string, ok bool)
	// Ready reports whether a leader is known and the FSM has caught up.
	Ready() bool
	// Cluster returns the Raft status.
	Cluster() ClusterStatus
	// AppliedIndex is the index of the last entry this node applied.
	AppliedIndex() uint64
	// WaitApplied blocks until this node applied index, or ctx ends (an error).
	WaitApplied(ctx context.Context, index uint64) error
	// AddNonvoter adds a node as non-voter and returns the commit index it must reach.
	AddNonvoter(ctx context.Context, id, raftAddr, httpAddr string) (uint64, error)
	// Promote makes a caught-up non-voter a voter.
	Promote(ctx context.Context, id, raftAddr string) error
	// Remove takes a node out of the cluster.
	Remove(ctx context.Context, id string) error
	// IsNotLeader reports whether err means "this node is not the leader".
	IsNotLeader(err error) bool
}

// ClusterStatus is the answer of GET /api/v1/cluster.
type ClusterStatus struct {
	Leader       *NodeRef     `json:"leader"`
	Nodes        []NodeStatus `json:"nodes"`
	Term         uint64       `json:"term"`
	CommitIndex  uint64       `json:"commit_index"`
	AppliedIndex uint64       `json:"applied_index"`
	Self         string       `json:"self"`
	// AdvertiseMQTT are the broker URLs agents should connect to (`--advertise-mqtt`, else this
	// node's embedded broker).
	AdvertiseMQTT []string `json:"advertise_mqtt"`
	// TopicPrefix is the MQTT topic prefix of the protocol (`--topic-prefix`); agents must use
	// the same.
	TopicPrefix string `json:"topic_prefix"`
	State       string `json:"state"`
}

// NodeRef names a node.
type NodeRef struct {
	ID   string `json:"id"`
	HTTP string `json:"http"`
}

// NodeStatus is one node of the cluster.
type NodeStatus struct {
	ID    string `json:"id"`
	Raft  string `json:"raft"`
	HTTP  string `json:"http"`
	State string `json:"state"`
	Voter bool   `json:"voter"`
}

// KeySource gives the cluster's current online signing key (hub/keys.Source).
type KeySource interface {
	// Current returns the signer and the online keys; keys.ErrNoTrust before the first root.
	Current() (keys.Current, error)
}

// Config holds what the API needs besides the store.
type Config struct {
	Store  Store
	Reader state.Reader
	// Seal seals a secret before it enters a Raft command (webhook secrets; hub/seal); nil
	// stores secrets as given. SealKey is the cluster seal key's text, handed to a node with its
	// promotion ("" when this node holds none).
	Seal    func(plain string) (string, error)
	SealKey func() string
	// Keys gives the cluster's current online signing key (approvals sign with it).
	Keys KeySource
	// NodeKey is this node's own signing key (DATA/signing.key). An approval also signs the
	// manifest bytes with it (artifact.Sign): the legacy signature desired states carry for
	// agents of the previous release, which trust the node keys they were enrolled with
	// (docs/upgrading.md). nil makes approvals without it.
	NodeKey ed25519.PrivateKey
	// RootKey returns this node's root key, or nil when the node does not hold it (then key
	// rotation must be signed offline, see docs/security.md).
	RootKey func() ed25519.PrivateKey
	// LastHeard, when set, returns when this node last heard a live message of a device (Unix
	// ms, 0: not since it started; hub/protocol Service.LastHeard). A device's answer shows the
	// later of it and the replicated last_seen, which heartbeats move only every
	// LastSeenInterval (docs/telemetry.md, "Presence contract").
	LastHeard func(id string) int64
	// FourEyes refuses an approval by the identity that registered the version.
	FourEyes bool
	// MaxUploadBytes bounds one upload (artifact or dataset sample); 0 means
	// DefaultMaxUploadBytes.
	MaxUploadBytes int64
	// SpoolDir is where uploads are spooled to disk while they are processed (a dataset sample
	// that arrives before its contract); "" means the system's temporary directory. The hub
	// puts it inside its data dir.
	SpoolDir string
	// MaxBodyBytes bounds JSON bodies; 0 means DefaultMaxBodyBytes.
	MaxBodyBytes int64
	Logger       *slog.Logger
	Registerer   prometheus.Registerer
	// Gatherer serves /metrics; nil means prometheus.DefaultGatherer.
	Gatherer prometheus.Gatherer
	// AdvertiseMQTT are the broker URLs agents are told to connect to.
	AdvertiseMQTT []string
	// TopicPrefix is the MQTT topic prefix GET /api/v1/cluster reports ("" reports wire's
	// default).
	TopicPrefix string
	// Samples validates dataset samples and computes reference profiles; nil stores the
	// contract and the sample's hash only (the answer says so in notes).
	Samples SampleProcessor
	// ProfileJSON renders an encoded profile as JSON for GET .../profile with Accept:
	// application/json. May be nil.
	ProfileJSON func(profile []byte) ([]byte, error)
	// Extra registers more routes (dashboard, drift, rollouts) on the same server. May be nil.
	Extra func(e *echo.Echo, s *Server)
	// PeerScheme ("http" or "https") and PeerTransport are how this node calls the others
	// (forwarding to the leader, replication checks): hub/cluster's Client. Empty scheme: the
	// scheme of the request being forwarded, and http for replication checks; nil transport:
	// a pooled plain transport.
	PeerScheme    string
	PeerTransport http.RoundTripper
	// Peers is the cluster client a follower calls the leader with: typed forwarding of the
	// commands its handlers build, read indexes, membership changes, and the relay of the
	// leader-bound calls (forward.go). nil: a follower answers writes with 503.
	Peers *cluster.Client
	// PeerToken returns this node's credential for the leader's cluster service (its node
	// token, "" without one). With a cluster CA the client's certificate is what counts.
	PeerToken func() string
	// ClusterTLS, when set, makes the cluster service (/cluster/v1/) admit only callers that
	// present a certificate of the cluster CA; without it, only node tokens are admitted.
	ClusterTLS *cluster.TLS
}

// DefaultMaxUploadBytes is the largest upload accepted unless configured (4 GiB): above the
// 2 GiB an ONNX protobuf can hold, well above the models an edge fleet runs, and small enough
// that one client cannot fill the hub's disk in one request. `--max-upload-bytes` changes it.
const DefaultMaxUploadBytes = 4 << 30

// DefaultMaxBodyBytes bounds a JSON body unless configured (4 MiB). A follower splits the
// telemetry batches it forwards to fit it.
const DefaultMaxBodyBytes = 4 << 20

// Server is the HTTP API.
type Server struct {
	// typed caches, per leader address, whether the leader takes typed calls (forward.go).
	typed   sync.Map
	cfg     Config
	store   Store
	read    state.Reader
	log     *slog.Logger
	echo    *echo.Echo
	metrics *apiMetrics
	client  *http.Client
}

// New builds the API server and its routes.
func New(cfg Config) *Server {
	if cfg.MaxUploadBytes <= 0 {
		cfg.MaxUploadBytes = DefaultMaxUploadBytes
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Server{
		cfg: cfg, store: cfg.Store, read: cfg.Reader, log: cfg.Logger,
		client: &http.Client{Timeout: 10 * time.Second, Transport: cfg.PeerTransport},
	}
	s.metrics = newAPIMetrics(cfg.Registerer)
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = s.errorHandler
	e.Use(s.recoverMiddleware, s.metrics.middleware)
	s.echo = e
	s.routes()
	if cfg.Extra != nil {
		cfg.Extra(e, s)
	}
	return s
}

// Handler returns the HTTP handler.
func (s *Server) Handler() http.Handler { return s.echo }

// Echo returns the underlying router (tests walk it against docs/openapi.yaml).
func (s *Server) Echo() *echo.Echo { return s.echo }

func (s *Server) recoverMiddleware(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) (err error) {
		defer func() {
			if r := recover(); r != nil {
				s.log.Error("panic in handler", "path", c.Path(), "panic", r)
				err = problem(500, ProblemInternal, "internal error", "the server hit a bug; see its log")
			}
		}()
		return next(c)
	}
}

func jsonEncode(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	return enc.Encode(v)
}
