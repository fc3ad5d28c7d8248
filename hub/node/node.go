// Package node assembles one hub node: the badger database, the Raft store, the state machine,
// the HTTP API and (when enabled) the embedded MQTT broker, and runs the chores that only the
// leader does (first admin token, registering the signing key).
package node

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/driftline/driftline/hub/api"
	"github.com/driftline/driftline/hub/broker"
	"github.com/driftline/driftline/hub/cluster"
	"github.com/driftline/driftline/hub/command"
	"github.com/driftline/driftline/hub/dashboard"
	"github.com/driftline/driftline/hub/fleetdrift"
	"github.com/driftline/driftline/hub/keys"
	"github.com/driftline/driftline/hub/protocol"
	"github.com/driftline/driftline/hub/rollout"
	"github.com/driftline/driftline/hub/samples"
	"github.com/driftline/driftline/hub/seal"
	"github.com/driftline/driftline/hub/state"
	"github.com/driftline/driftline/hub/store"
	"github.com/driftline/driftline/hub/webhook"
	"github.com/driftline/driftline/shared/artifact"
	"github.com/driftline/driftline/shared/kv"
	"github.com/driftline/driftline/shared/wire"
)

// Config is everything `driftline hub serve` takes. Each field has a flag and a DRIFTLINE_* env
// var (see hub/cli); docs/operations.md documents them.
type Config struct {
	// DataDir holds the database, Raft snapshots, the signing key and admin.token.
	DataDir string
	// NodeID names this node in the cluster; default: derived from the Raft address.
	NodeID string
	// HTTPAddr is where the API listens (":8080"); port 0 picks a free port.
	HTTPAddr string
	// AdvertiseHTTP is the API address other nodes use to reach this one; default: HTTPAddr with
	// an empty or wildcard host replaced by the Raft host.
	AdvertiseHTTP string
	// RaftAddr is where Raft listens and what it advertises ("127.0.0.1:7000").
	RaftAddr string
	// RaftDialVia maps a peer's Raft address to the address this node dials for it instead
	// (store.Config.RaftDialVia: a fault-injection harness's per-link proxy, or a tunnel).
	RaftDialVia map[string]string
	// AdvertiseRaft, when set, is the Raft address peers dial instead of RaftAddr (a NAT or a
	// proxy in front of the node: the fault-injection harness puts one on every node).
	AdvertiseRaft string
	// MQTTAddr is the embedded broker's listener; empty disables it.
	MQTTAddr string
	// MQTTSAddr is the embedded broker's TLS listener when TLSCert is set; default: port 8883
	// beside a plain 1883, else the plain port + 1.
	MQTTSAddr string
	// Brokers are external broker URLs used instead of the embedded one.
	Brokers []string
	// AdvertiseMQTT are the broker URLs agents are told to connect to.
	AdvertiseMQTT []string
	// Join is the HTTP URL of a node of an existing cluster; empty bootstraps a one-node cluster
	// on first start.
	Join string
	// JoinToken is an admin token of the cluster being joined.
	JoinToken string
	// AdminTokenFile, when set, holds the admin token for hands-off bootstrap: the first leader
	// of a new cluster creates the admin token with it (instead of a random one), and it is the
	// join token when JoinToken is empty. See bootstrap.go.
	AdminTokenFile string
	// adminToken is AdminTokenFile's content, read at Start.
	adminToken string
	// TLSCert and TLSKey enable HTTPS and MQTTS on the embedded broker; the broker's plain
	// listener is then off unless MQTTPlainAddr asks for it, and agents are told ssl:// URLs.
	TLSCert, TLSKey string
	// TLSCA is the cluster CA (PEM): with it, Raft runs over mutual TLS and node-to-node HTTP
	// presents and checks certificates; TLSCert must be signed by it. Without it Raft is plain,
	// unauthenticated TCP (docs/security.md).
	TLSCA string
	// TLSClientCA, when set, makes the MQTTS listener require a device certificate signed by
	// it, besides the device token.
	TLSClientCA string
	// MQTTPlainAddr is a plain MQTT listener kept beside MQTTS when TLSCert is set ("": none).
	MQTTPlainAddr string
	// BrokerLimits are the embedded broker's limits on its clients; zero fields take the
	// broker's defaults (see broker.Limits).
	BrokerLimits broker.Limits
	// SigningKey is the ed25519 key file; default DataDir/signing.key, generated when absent.
	// The cluster's first leader makes it the first online key of the root of trust; other
	// nodes sign with the online keys the replicated state holds.
	SigningKey string
	// RootKey is the root-of-trust key file; default DataDir/root.key. The first leader
	// generates it there; it signs only key rotations and can be moved offline (docs/security.md).
	RootKey string
	// DesiredTTL is how long a signed desired state is valid (protocol.DefaultDesiredTTL when 0).
	DesiredTTL time.Duration
	// LastSeenInterval is how often at most a device's heartbeats move its replicated last_seen
	// (protocol.Config's LastSeenInterval); zero: the presence window.
	LastSeenInterval time.Duration
	// SharedChunkDelay and SharedChunkGap tune the shared chunk fan-out (protocol.Config's
	// SharedDelay and SharedGap); zero: the defaults.
	SharedChunkDelay, SharedChunkGap time.Duration
	// FourEyes refuses an approval by the identity that registered the version.
	FourEyes bool
	// MaxUploadBytes bounds one upload; 0 means api.DefaultMaxUploadBytes (4 GiB).
	MaxUploadBytes int64
	// TopicPrefix is the MQTT topic prefix of the protocol; empty means wire.DefaultPrefix. The
	// broker's access rules, the protocol service and fleet drift use it, and GET /api/v1/cluster
	// tells it to `device add --agent-config`, which writes it into the agent's config.
	TopicPrefix string
	// DiskReserve is the free space the data dir's file system must keep: below it the node
	// stops (Failed) before a write can fail; 0 means DefaultDiskReserve, negative disables.
	DiskReserve int64
	// DiskCheckInterval is how often free space is checked; 0 means DefaultDiskCheckInterval.
	DiskCheckInterval time.Duration
	// BackupDir, when set, receives a checked backup every BackupEvery from the node that leads
	// then; the newest BackupKeep are kept (0: all). See backups.go.
	BackupDir   string
	BackupEvery time.Duration
	BackupKeep  int
	// RunsRetention deletes closed lineage runs edges (and the drift and validation totals on
	// them) older than this; AuditRetention exports audit entries older than this into
	// AuditArchiveDir and prunes them (a checkpointed chain); the leader applies both every
	// RetentionEvery (DefaultRetentionEvery when 0). 0 keeps forever. See retention.go.
	RunsRetention   time.Duration
	AuditRetention  time.Duration
	AuditArchiveDir string
	RetentionEvery  time.Duration
	// DriftFineRetention and DriftCoarseRetention bound fleet drift's in-memory series (0: the
	// drift service's defaults, 1 h and 7 days).
	DriftFineRetention, DriftCoarseRetention time.Duration
	// Peers are the API URLs of the other nodes. A node with no Join asks them first: if one is
	// in a cluster that has a leader, it joins through it instead of bootstrapping a second
	// cluster (peers.go).
	Peers []string
	// RaftCommitTimeout is raft's CommitTimeout: how soon a follower learns that its forwarded
	// write committed (read-your-writes latency) against the leader's idle CPU (an empty append
	// per follower per timeout); 0 means DefaultRaftCommitTimeout (1 ms). See forward.go.
	RaftCommitTimeout time.Duration
	// DeadNodeTimeout, when positive, makes the leader remove a voter it has not heard from for
	// this long, as long as the remaining voters keep a quorum (autopilot.go in hub/store).
	DeadNodeTimeout time.Duration
	// SampleSettle is how long devices' samples of drifted windows wait for others before they
	// become a candidate dataset version (0: hub/samples' default, 30 s).
	SampleSettle time.Duration
	Logger       *slog.Logger
	// httpLimits are the API server's timeouts; zero means defaultHTTPLimits (tests shorten them).
	httpLimits httpLimits
	// forwardLimit overrides the largest telemetry body forwarded to the leader (tests).
	forwardLimit int
	// peerWait overrides defaultPeerWait (tests).
	peerWait time.Duration
}

// Node is a running hub node.
type Node struct {
	cfg   Config
	log   *slog.Logger
	db    *badger.DB
	logDB *badger.DB
	store *store.Store
	// credentials is the credential watch's subscription to the store's change feed, made
	// before the store opens.
	credentials *store.Subscription
	api         *api.Server
	http        *http.Server
	httpLn      net.Listener
	key         ed25519.PrivateKey
	keys        *keys.Source
	rootMu      sync.Mutex
	rootKey     ed25519.PrivateKey // nil when this node does not hold the root key
	registry    *prometheus.Registry
	broker      *broker.Broker
	// peers is how this node calls the others' APIs.
	peers *cluster.Client
	// sweep counts what the chunk sweep deleted (forward.go).
	sweep    *sweepMetrics
	paho     *protocol.PahoTransport
	proto    *protocol.Service
	rollouts *rollout.Controller
	drift    *fleetdrift.Service
	// predDrift is the fleet view of predictions: merged prediction profiles against each
	// version's output reference.
	predDrift *fleetdrift.Service
	// sealMu guards sealKey: the cluster's seal key, nil when this node holds none.
	sealMu   sync.RWMutex
	sealKey  *seal.Key
	webhooks *webhook.Dispatcher
	samples  *samples.Collector
	// transport is the MQTT connection the protocol service uses (nil without MQTT).
	transport protocol.Transport
	// topics are the protocol's topics under Config.TopicPrefix.
	topics   wire.Topics
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	closeMu  sync.Mutex
	closed   bool
	failOnce sync.Once
	failed   chan struct{}
	failErr  error
}

// AdminTokenFile is the file under the data dir where the first start writes the admin token.
const AdminTokenFile = "admin.token"

// RootKeyFile is the file under the data dir where the cluster's first leader writes the root
// key (mode 0600).
const RootKeyFile = "root.key"

// Start opens the node's state and starts serving. It returns once the HTTP API listens; leader
// chores run in the background.
func Start(ctx context.Context, cfg Config) (*Node, error) {
	topics, err := prepareConfig(&cfg)
	if err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, log: cfg.Logger, registry: prometheus.NewRegistry(), topics: topics, failed: make(chan struct{})}
	if reserve := n.diskReserve(); reserve > 0 {
		if free, err := freeBytes(cfg.DataDir); err == nil && free < reserve {
			return nil, fmt.Errorf("%w: %s has %d MiB free, below the %d MiB reserve: free space first", ErrDiskFull, cfg.DataDir, free>>20, reserve>>20)
		}
	}
	n.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	ok := false
	defer func() {
		if !ok {
			n.Close()
		}
	}()
	if err := n.loadKeys(); err != nil {
		return nil, err
	}
	advHTTP, ctls, err := n.openStore()
	if err != nil {
		return nil, err
	}
	if err := n.startServices(); err != nil {
		return nil, err
	}
	if err := n.startMQTT(); err != nil {
		return nil, fmt.Errorf("node: mqtt: %w", err)
	}
	if err := n.serveAPI(ctls); err != nil {
		return nil, err
	}
	bg, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	if err := n.joinOrBootstrap(ctx, advHTTP); err != nil {
		return nil, err
	}
	n.runBackground(bg)
	n.log.Info("hub node started", "id", n.cfg.NodeID, "http", n.httpLn.Addr().String(), "raft", n.cfg.RaftAddr, "data", n.cfg.DataDir)
	ok = true
	return n, nil
}

// prepareConfig checks cfg and fills in its defaults (the logger, the bootstrap admin token from
// its file, the topic prefix), making the data dir; it returns the topics of the prefix.
func prepareConfig(cfg *Config) (wire.Topics, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.DataDir == "" {
		return wire.Topics{}, errors.New("node: data dir is required")
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return wire.Topics{}, fmt.Errorf("node: data dir: %w", err)
	}
	if cfg.AdminTokenFile != "" {
		tok, err := readBootstrapToken(cfg.AdminTokenFile)
		if err != nil {
			return wire.Topics{}, err
		}
		cfg.adminToken = tok
		if cfg.JoinToken == "" {
			cfg.JoinToken = tok
		}
	}
	if err := checkRetention(*cfg); err != nil {
		return wire.Topics{}, err
	}
	if cfg.TopicPrefix == "" {
		cfg.TopicPrefix = wire.DefaultPrefix
	}
	topics, err := wire.NewTopics(cfg.TopicPrefix)
	if err != nil {
		return wire.Topics{}, fmt.Errorf("node: topic prefix: %w", err)
	}
	return topics, nil
}

// loadKeys loads the node's signing key (made on first start) and, when this node holds it, the
// cluster's root key.
func (n *Node) loadKeys() error {
	keyPath := n.cfg.SigningKey
	if keyPath == "" {
		keyPath = filepath.Join(n.cfg.DataDir, "signing.key")
	}
	var err error
	if n.key, err = artifact.LoadOrGenerateKey(keyPath); err != nil {
		return fmt.Errorf("node: signing key: %w", err)
	}
	if n.cfg.RootKey == "" {
		n.cfg.RootKey = filepath.Join(n.cfg.DataDir, RootKeyFile)
	}
	if n.rootKey, err = artifact.LoadKey(n.cfg.RootKey); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("node: root key: %w", err)
	}
	return nil
}

// openStore listens on the API address, opens the two databases and the Raft store, and returns
// the API address advertised to the cluster and the cluster TLS config (nil without TLS).
func (n *Node) openStore() (string, *cluster.TLS, error) {
	cfg := &n.cfg
	var err error
	if n.httpLn, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
		return "", nil, fmt.Errorf("node: listen http %s: %w", cfg.HTTPAddr, err)
	}
	if err := n.loadSealKey(); err != nil {
		return "", nil, err
	}
	// Two databases: the Raft log syncs every write; the state machine's does not need to (see
	// store.Config.LogDB), which halves the fsyncs per committed batch.
	if n.logDB, err = kv.Open(filepath.Join(cfg.DataDir, "raftlog"), kv.RaftLog); err != nil {
		return "", nil, fmt.Errorf("node: %w", err)
	}
	if n.db, err = kv.Open(filepath.Join(cfg.DataDir, "db"), kv.State); err != nil {
		return "", nil, fmt.Errorf("node: %w", err)
	}
	advHTTP := cfg.AdvertiseHTTP
	if advHTTP == "" {
		advHTTP = advertise(n.httpLn.Addr().String(), cfg.RaftAddr)
	}
	if cfg.NodeID == "" {
		cfg.NodeID = DefaultNodeID(cfg.RaftAddr)
	}
	n.keys = &keys.Source{R: n.Reader()}
	ctls, layer, err := clusterTLS(*cfg)
	if err != nil {
		return "", nil, fmt.Errorf("node: %w", err)
	}
	n.peers = cluster.NewClient(ctls, cfg.TLSCert != "")
	// The credential watch subscribes before the store starts, so the entries replayed at start
	// reach it too.
	changes := store.NewFeed()
	n.credentials = changes.Subscribe()
	n.store, err = store.Open(store.Config{
		Changes: changes, DB: n.db, LogDB: n.logDB, Dir: filepath.Join(cfg.DataDir, "raft"), NodeID: cfg.NodeID, StreamLayer: layer,
		RaftBind: cfg.RaftAddr, RaftAdvertise: raftAdvertiseOf(*cfg), RaftDialVia: cfg.RaftDialVia, HTTPAddr: advHTTP,
		Bootstrap: cfg.Join == "" && len(cfg.Peers) == 0, DeadNodeTimeout: cfg.DeadNodeTimeout,
		Processor: state.Processor{}, Logger: cfg.Logger, Registerer: n.registry,
		Tune: n.tuneRaft, PeerInfo: n.peerMaxCommand,
	})
	if err != nil {
		if layer != nil {
			layer.Close()
		}
		return "", nil, fmt.Errorf("node: %w", err)
	}
	return advHTTP, ctls, nil
}

// startServices makes the services that run on the store: the ops commands, the rollout
// controller, webhooks, dataset samples and the drift service.
func (n *Node) startServices() error {
	cfg := n.cfg
	n.registerOps()
	n.sweep = newSweepMetrics(n.registry)
	n.rollouts = rollout.New(rollout.Config{Store: n.store, Changes: n.store.Changes(), Reader: n.Reader(), Logger: cfg.Logger, Registerer: n.registry})
	n.webhooks = webhook.New(webhook.Config{Store: n.store, Reader: n.Reader(), NodeID: cfg.NodeID, Open: n.openSecret,
		Logger: cfg.Logger, Registerer: n.registry})
	n.samples = samples.New(samples.Config{Store: n.store, Reader: n.Reader(), Logger: cfg.Logger, Registerer: n.registry,
		Settle: cfg.SampleSettle, Forward: n.applyOrForward, Topics: n.topics, Publish: n.publishQoS1,
		// With an external broker every node hears every device: the leader stages alone.
		LeaderOnly: len(cfg.Brokers) > 0})
	var err error
	if n.drift, err = n.newFleetDrift(false); err != nil {
		return err
	}
	n.predDrift, err = n.newFleetDrift(true)
	return err
}

// newFleetDrift makes the fleet view of inputs, or with predictions of the models' outputs.
func (n *Node) newFleetDrift(predictions bool) (*fleetdrift.Service, error) {
	cfg := n.cfg
	s, err := fleetdrift.New(fleetdrift.Config{
		Predictions: predictions, Registry: n.Reader(), Topics: n.topics, Logger: cfg.Logger, Registerer: n.registry,
		FineRetention: cfg.DriftFineRetention, CoarseRetention: cfg.DriftCoarseRetention,
		Publish: n.publishQoS1,
		// With an external broker every node hears every device: only the leader publishes.
		ShouldPublish: func() bool { return len(cfg.Brokers) == 0 || n.store.IsLeader() },
	})
	if err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	return s, nil
}

// publishQoS1 publishes one message (QoS 1, not retained) on the node's MQTT transport; without
// one it does nothing.
func (n *Node) publishQoS1(topic string, payload []byte) error {
	if n.transport == nil {
		return nil
	}
	return n.transport.Publish(topic, payload, false, 1)
}

// lastHeard is when this node's protocol service last heard a live message of device id (0
// without one): the API merges it into the replicated last_seen.
func (n *Node) lastHeard(id string) int64 {
	if n.proto == nil {
		return 0
	}
	return n.proto.LastHeard(id)
}

// serveAPI makes the HTTP API (with the drift routes, the dashboard and, when asked for, pprof)
// and serves it on the API listener, over TLS when configured.
func (n *Node) serveAPI(ctls *cluster.TLS) error {
	cfg := n.cfg
	spool, err := prepareSpool(cfg.DataDir)
	if err != nil {
		return err
	}
	n.api = api.New(api.Config{
		Store: opsAdapter{storeAdapter{n.store}, cfg.DataDir}, Reader: state.Reader{DB: n.db}, Keys: n.keys, NodeKey: n.key, RootKey: n.currentRootKey, FourEyes: cfg.FourEyes,
		MaxUploadBytes: cfg.MaxUploadBytes, Logger: cfg.Logger, Registerer: n.registry, Gatherer: n.registry,
		Samples: NewSampleProcessor(spool), ProfileJSON: ProfileJSON, SpoolDir: spool,
		Seal: n.sealSecret, SealKey: n.sealKeyText, LastHeard: n.lastHeard,
		Extra: func(e *echo.Echo, s *api.Server) {
			fleetdrift.Register(e.Group("/api/v1"), n.drift, s.ReadMiddleware()...)
			fleetdrift.RegisterPredictions(e.Group("/api/v1"), n.predDrift, s.ReadMiddleware()...)
			dashboard.Register(e)
			if os.Getenv("DRIFTLINE_PPROF") != "" { // profiling for operators, off by default
				registerPprof(e, s.AdminMiddleware()...)
			}
		},
		PeerScheme: n.peers.Scheme, PeerTransport: n.peers.Transport,
		Peers: n.peers, PeerToken: n.peerToken, ClusterTLS: ctls,
		AdvertiseMQTT: n.advertisedMQTT(),
		TopicPrefix:   cfg.TopicPrefix,
	})
	n.http = newHTTPServer(n.api.Handler(), cfg.httpLimits, n.registry)
	if ctls != nil {
		n.http.TLSConfig = ctls.APIServerConfig()
	}
	go func() {
		var err error
		if cfg.TLSCert != "" {
			err = n.http.ServeTLS(n.httpLn, cfg.TLSCert, cfg.TLSKey)
		} else {
			err = n.http.Serve(n.httpLn)
		}
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("http server stopped", "err", err)
		}
	}()
	return nil
}

// runBackground starts the node's background loops until bg ends: credential watch, drift,
// rollouts, leader chores, webhooks, samples, the databases' GC, the disk watch and scheduled
// backups. Close waits for them.
func (n *Node) runBackground(bg context.Context) {
	loops := []func(){
		func() { n.watchCredentials(bg, n.credentials) },
		func() { n.drift.Run(bg) },
		func() { n.predDrift.Run(bg) },
		func() { n.rollouts.Run(bg) },
		func() { n.leaderChores(bg) },
		func() { n.webhooks.Run(bg) },
		func() { n.samples.Run(bg) },
		func() { kv.RunGC(bg, n.db, 5*time.Minute, n.log) },
		func() { kv.RunGC(bg, n.logDB, 5*time.Minute, n.log) },
		func() { n.watchDisk(bg) },
	}
	if n.cfg.BackupDir != "" && n.cfg.BackupEvery > 0 {
		m := newBackupMetrics(n.registry)
		loops = append(loops, func() { n.runBackups(bg, m) })
	}
	if n.cfg.RunsRetention > 0 || n.cfg.AuditRetention > 0 {
		m := newRetentionMetrics(n.registry)
		loops = append(loops, func() { n.runRetention(bg, m) })
	}
	n.wg.Add(len(loops))
	for _, loop := range loops {
		go func() { defer n.wg.Done(); loop() }()
	}
}

// advertise turns a listen address into one other hosts can dial.
func advertise(listen, raft string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		rh, _, err := net.SplitHostPort(raft)
		if err != nil || rh == "" || rh == "0.0.0.0" {
			rh = "127.0.0.1"
		}
		host = rh
	}
	return net.JoinHostPort(host, port)
}

// raftAdvertiseOf is Config.AdvertiseRaft, else raftAdvertise(RaftAddr).
func raftAdvertiseOf(cfg Config) string {
	if cfg.AdvertiseRaft != "" {
		return cfg.AdvertiseRaft
	}
	return raftAdvertise(cfg.RaftAddr)
}

// raftAdvertise is the Raft address to advertise: the configured one when it names a host and a
// port, else empty (the transport then advertises the address it bound).
func raftAdvertise(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || port == "0" || host == "" || host == "0.0.0.0" || host == "::" {
		return ""
	}
	return addr
}

// HTTPAddr is the address the API listens on.
func (n *Node) HTTPAddr() string { return n.httpLn.Addr().String() }

// URL is the base URL of the API.
func (n *Node) URL() string {
	scheme := "http"
	if n.cfg.TLSCert != "" {
		scheme = "https"
	}
	return scheme + "://" + advertise(n.HTTPAddr(), n.cfg.RaftAddr)
}

// ID is the node's id.
func (n *Node) ID() string { return n.cfg.NodeID }

// Store is the node's Raft store.
func (n *Node) Store() *store.Store { return n.store }

// Gatherer returns the node's metrics registry, what GET /metrics serves (tests and tools).
func (n *Node) Gatherer() prometheus.Gatherer { return n.registry }

// Transport returns the MQTT connection the hub's protocol service publishes with (nil without
// MQTT): what goes out on it, agents take as the hub's. For tests and tools.
func (n *Node) Transport() protocol.Transport { return n.transport }

// Reader reads the node's local state.
func (n *Node) Reader() state.Reader { return state.Reader{DB: n.db} }

// AdminTokenPath is where the first start wrote the admin token.
func (n *Node) AdminTokenPath() string { return filepath.Join(n.cfg.DataDir, AdminTokenFile) }

// Close stops serving and closes the store and database. It transfers leadership first when
// this node leads a cluster of several.
func (n *Node) Close() error {
	n.closeMu.Lock()
	defer n.closeMu.Unlock()
	if n.closed {
		return nil
	}
	n.closed = true
	if n.cancel != nil {
		n.cancel()
	}
	var errs []error
	if n.http != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		errs = append(errs, n.http.Shutdown(ctx))
		cancel()
	} else if n.httpLn != nil {
		n.httpLn.Close()
	}
	n.wg.Wait()
	if n.proto != nil {
		n.proto.Close()
	}
	if n.broker != nil {
		errs = append(errs, n.broker.Close())
	}
	if n.paho != nil {
		n.paho.Close()
	}
	if n.store != nil {
		errs = append(errs, n.store.Close())
	}
	if n.db != nil {
		errs = append(errs, n.db.Close())
	}
	if n.logDB != nil {
		errs = append(errs, n.logDB.Close())
	}
	return errors.Join(errs...)
}

// leaderChores runs while the node lives: whenever it is the leader it makes sure the cluster
// has a root of trust and its own node key is registered (ensureNodeKey) and, on a cluster that
// has no token yet, creates the admin token.
func (n *Node) leaderChores(ctx context.Context) {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	keyDone, tokenDone := false, false
	var lastSweep time.Time // the first sweep runs as soon as this node leads
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if n.store.IsLeader() && time.Since(lastSweep) >= chunkSweepInterval {
			lastSweep = time.Now()
			if _, err := n.markOrphanChunks(ctx); err != nil {
				n.log.Warn("mark orphan chunks", "err", err)
			}
			if _, err := n.sweepChunks(ctx, chunkSweepGrace); err != nil {
				n.log.Warn("sweep chunks of aborted uploads", "err", err)
			}
		}
		if keyDone && tokenDone {
			t.Reset(5 * time.Second)
			keyDone = false // re-check after a leader change
		}
		if !n.store.IsLeader() {
			continue
		}
		if !keyDone {
			if err := n.ensureTrust(ctx); err != nil {
				n.log.Warn("create the root of trust", "err", err)
			} else if err := n.ensureNodeKey(ctx); err != nil {
				n.log.Warn("register signing key", "err", err)
			} else {
				keyDone = true
			}
		}
		if !tokenDone {
			if err := n.ensureAdminToken(ctx); err != nil {
				n.log.Warn("create admin token", "err", err)
			} else {
				tokenDone = true
			}
		}
		// After the admin token: ensureAdminToken acts only on a cluster with no token at all.
		if tokenDone {
			if err := n.ensureNodeToken(ctx); err != nil {
				n.log.Warn("create this node's node token", "err", err)
			}
		}
	}
}

// ensureNodeKey registers this node's public signing key (key/KEYID, command SigningKeyAdd) when
// the replicated state does not hold it yet, as the previous release did for every node that
// led. This release signs approvals for its own agents with the online keys of the root of
// trust, but the leader still signs each approval's manifest with its node key (the legacy
// signature desired states carry for agents of the previous release), and `device add` of that
// release enrolled agents with the registered node keys (trusted_keys). Call after a barrier.
func (n *Node) ensureNodeKey(ctx context.Context) error {
	pub := n.key.Public().(ed25519.PublicKey)
	id := artifact.KeyID(pub)
	have, err := n.Reader().SigningKeys()
	if err != nil {
		return err
	}
	for _, k := range have {
		if k.KeyID == id {
			return nil
		}
	}
	env, err := command.New(command.TypeSigningKeyAdd, "", 0, "hub:"+n.cfg.NodeID,
		state.SigningKeyAdd{KeyID: id, PublicKey: artifact.PublicKeyBase64(pub)})
	if err != nil {
		return err
	}
	_, err = n.store.Apply(ctx, env)
	return err
}

// ensureTrust creates the cluster's root of trust when it has none: a root key (written to
// RootKey, 0600) certifying this node's signing key as the first online key. Using the existing
// signing key keeps agents enrolled with it (trusted_keys) working.
func (n *Node) ensureTrust(ctx context.Context) error {
	if err := n.store.Barrier(ctx); err != nil {
		return err
	}
	if _, err := n.Reader().Trust(); !errors.Is(err, state.ErrNotFound) {
		return err
	}
	rootKey, err := artifact.LoadOrGenerateKey(n.cfg.RootKey)
	if err != nil {
		return fmt.Errorf("root key: %w", err)
	}
	set, err := keys.Bootstrap(rootKey, n.key, time.Now())
	if err != nil {
		return err
	}
	env, err := command.New(command.TypeTrustSet|command.IgnoreIfUnknown, "", 0, "hub:"+n.cfg.NodeID, set)
	if err != nil {
		return err
	}
	if _, err := n.store.Apply(ctx, env); err != nil {
		return err
	}
	n.rootMu.Lock()
	n.rootKey = rootKey
	n.rootMu.Unlock()
	n.log.Info("created the cluster's root of trust", "root_key", n.cfg.RootKey, "online_key", set.Signer)
	return nil
}

// currentRootKey returns the root key if this node holds it, else nil.
func (n *Node) currentRootKey() ed25519.PrivateKey {
	n.rootMu.Lock()
	defer n.rootMu.Unlock()
	return n.rootKey
}

// ensureAdminToken creates the first admin token and writes it to DATA/admin.token (0600) when
// the cluster has no token at all.
func (n *Node) ensureAdminToken(ctx context.Context) error {
	if err := n.store.Barrier(ctx); err != nil {
		return err
	}
	count, err := n.Reader().TokenCount()
	if err != nil || count > 0 {
		return err
	}
	tok := n.cfg.adminToken
	if tok == "" {
		tok = api.NewToken()
	}
	path := n.AdminTokenPath()
	if err := os.WriteFile(path+".tmp", []byte(tok+"\n"), 0o600); err != nil {
		return err
	}
	env, _ := command.New(command.TypeTokenCreate, "admin-bootstrap", 0, "hub:"+n.cfg.NodeID,
		state.TokenCreate{ID: "admin", Name: "admin", Role: state.RoleAdmin, Hash: api.HashToken(tok)})
	if _, err := n.store.Apply(ctx, env); err != nil {
		os.Remove(path + ".tmp")
		return err
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		return err
	}
	n.log.Info("created the admin token", "file", path)
	return nil
}

// join adds this node to the cluster at cfg.Join: first as a non-voter, then, once it has
// applied the log up to the commit index the leader named, as a voter.
func (n *Node) join(ctx context.Context, advHTTP string) error {
	req := cluster.JoinRequest{ID: n.cfg.NodeID, Raft: n.store.RaftAddr(), HTTP: advHTTP}
	resp, err := n.postJoin(ctx, req)
	if err != nil {
		return fmt.Errorf("node: join %s: %w", n.cfg.Join, err)
	}
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := n.store.WaitApplied(wctx, resp.CommitIndex); err != nil {
		return fmt.Errorf("node: join: catching up to index %d: %w", resp.CommitIndex, err)
	}
	req.Promote = true
	if resp, err = n.postJoin(ctx, req); err != nil {
		return fmt.Errorf("node: join %s (promote): %w", n.cfg.Join, err)
	}
	if err := n.adoptSealKey(resp.SealKey); err != nil {
		return fmt.Errorf("node: join: %w", err)
	}
	if resp.NodeToken != "" { // the leader made this node's token with the promotion
		if err := writeSecret(filepath.Join(n.cfg.DataDir, NodeTokenFile), resp.NodeToken); err != nil {
			return fmt.Errorf("node: join: %w", err)
		}
	} else if err := n.createNodeToken(ctx); err != nil { // a leader of an older version
		return fmt.Errorf("node: join: %w", err)
	}
	n.log.Info("joined the cluster", "via", n.cfg.Join)
	return nil
}

func (n *Node) postJoin(ctx context.Context, req cluster.JoinRequest) (cluster.JoinResponse, error) {
	// With a bootstrap token (--admin-token-file) every node starts at once: until the first
	// leader has created the admin token from the same file, it answers 401.
	bootstrapping := n.cfg.adminToken != "" && n.cfg.JoinToken == n.cfg.adminToken
	return n.peers.Join(ctx, n.cfg.Join, n.cfg.JoinToken, req, func(err error) bool {
		return errors.Is(err, cluster.ErrUnavailable) || (bootstrapping && errors.Is(err, cluster.ErrUnauthorized))
	})
}

// advertisedMQTT is what agents are told to connect to: --advertise-mqtt, else the embedded
// broker's URL, else the external brokers.
func (n *Node) advertisedMQTT() []string {
	if len(n.cfg.AdvertiseMQTT) > 0 {
		return n.cfg.AdvertiseMQTT
	}
	if u := n.MQTTURL(); u != "" {
		return []string{u}
	}
	var out []string
	for _, b := range n.cfg.Brokers {
		if i := strings.Index(b, "@"); i >= 0 { // never hand out the hub's credentials
			if j := strings.Index(b, "://"); j >= 0 && j < i {
				b = b[:j+3] + b[i+1:]
			}
		}
		out = append(out, b)
	}
	return out
}
