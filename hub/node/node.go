// Package node assembles one hub node: the badger database, the Raft store, the state machine,
// the HTTP API and (when enabled) the embedded MQTT broker, and runs the chores that only the
// leader does (first admin token, registering the signing key).
package node

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	_ "net/http/pprof" // served only with DRIFTLINE_PPROF set
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
	"github.com/driftline/driftline/hub/command"
	"github.com/driftline/driftline/hub/dashboard"
	"github.com/driftline/driftline/hub/drift"
	"github.com/driftline/driftline/hub/protocol"
	"github.com/driftline/driftline/hub/rollout"
	"github.com/driftline/driftline/hub/samples"
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
	// TLSCert and TLSKey enable HTTPS (and MQTTS on the embedded broker).
	TLSCert, TLSKey string
	// SigningKey is the ed25519 key file; default DataDir/signing.key, generated when absent.
	SigningKey string
	// FourEyes refuses an approval by the identity that registered the version.
	FourEyes bool
	// MaxUploadBytes bounds one upload; 0 means the API default.
	MaxUploadBytes int64
	// SampleSettle is how long devices' samples of drifted windows wait for others before they
	// become a candidate dataset version (0: hub/samples' default, 30 s).
	SampleSettle time.Duration
	Logger       *slog.Logger
}

// Node is a running hub node.
type Node struct {
	cfg      Config
	log      *slog.Logger
	db       *badger.DB
	logDB    *badger.DB
	store    *store.Store
	api      *api.Server
	http     *http.Server
	httpLn   net.Listener
	key      ed25519.PrivateKey
	registry *prometheus.Registry
	broker   *broker.Broker
	paho     *protocol.PahoTransport
	proto    *protocol.Service
	rollouts *rollout.Controller
	drift    *drift.Service
	webhooks *webhook.Dispatcher
	samples  *samples.Collector
	// transport is the MQTT connection the protocol service uses (nil without MQTT).
	transport protocol.Transport
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeMu   sync.Mutex
	closed    bool
}

// AdminTokenFile is the file under the data dir where the first start writes the admin token.
const AdminTokenFile = "admin.token"

// Start opens the node's state and starts serving. It returns once the HTTP API listens; leader
// chores run in the background.
func Start(ctx context.Context, cfg Config) (*Node, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.DataDir == "" {
		return nil, errors.New("node: data dir is required")
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("node: data dir: %w", err)
	}
	n := &Node{cfg: cfg, log: cfg.Logger, registry: prometheus.NewRegistry()}
	n.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	ok := false
	defer func() {
		if !ok {
			n.Close()
		}
	}()
	var err error
	keyPath := cfg.SigningKey
	if keyPath == "" {
		keyPath = filepath.Join(cfg.DataDir, "signing.key")
	}
	if n.key, err = artifact.LoadOrGenerateKey(keyPath); err != nil {
		return nil, fmt.Errorf("node: signing key: %w", err)
	}
	if n.httpLn, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
		return nil, fmt.Errorf("node: listen http %s: %w", cfg.HTTPAddr, err)
	}
	// Two databases: the Raft log syncs every write; the state machine's does not need to (see
	// store.Config.LogDB), which halves the fsyncs per committed batch.
	if n.logDB, err = kv.Open(filepath.Join(cfg.DataDir, "raftlog"), kv.Server); err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	if n.db, err = kv.Open(filepath.Join(cfg.DataDir, "db"), kv.State); err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	advHTTP := cfg.AdvertiseHTTP
	if advHTTP == "" {
		advHTTP = advertise(n.httpLn.Addr().String(), cfg.RaftAddr)
	}
	if cfg.NodeID == "" {
		cfg.NodeID = "hub-" + strings.NewReplacer(":", "-", ".", "-").Replace(cfg.RaftAddr)
	}
	n.cfg = cfg
	n.store, err = store.Open(store.Config{
		DB: n.db, LogDB: n.logDB, Dir: filepath.Join(cfg.DataDir, "raft"), NodeID: cfg.NodeID,
		RaftBind: cfg.RaftAddr, RaftAdvertise: raftAdvertise(cfg.RaftAddr), HTTPAddr: advHTTP,
		Bootstrap: cfg.Join == "", Processor: state.Processor{}, Logger: cfg.Logger, Registerer: n.registry,
	})
	if err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	n.rollouts = rollout.New(rollout.Config{Store: n.store, Reader: n.Reader(), Logger: cfg.Logger, Registerer: n.registry})
	n.webhooks = webhook.New(webhook.Config{Store: n.store, Reader: n.Reader(), NodeID: cfg.NodeID,
		Logger: cfg.Logger, Registerer: n.registry})
	n.samples = samples.New(samples.Config{Store: n.store, Reader: n.Reader(), Logger: cfg.Logger, Registerer: n.registry,
		Settle: cfg.SampleSettle, Forward: n.applyOrForward,
		// With an external broker every node hears every device: the leader stages alone.
		LeaderOnly: len(cfg.Brokers) > 0})
	n.drift, err = drift.New(drift.Config{
		Registry: n.Reader(), Topics: wire.Default(), Logger: cfg.Logger, Registerer: n.registry,
		Publish: func(topic string, payload []byte) error {
			if n.transport == nil {
				return nil
			}
			return n.transport.Publish(topic, payload, false, 1)
		},
		// With an external broker every node hears every device: only the leader publishes.
		ShouldPublish: func() bool { return len(cfg.Brokers) == 0 || n.store.IsLeader() },
	})
	if err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	if err := n.startMQTT(); err != nil {
		return nil, fmt.Errorf("node: mqtt: %w", err)
	}
	n.api = api.New(api.Config{
		Store: storeAdapter{n.store}, Reader: state.Reader{DB: n.db}, SigningKey: n.key, FourEyes: cfg.FourEyes,
		MaxUploadBytes: cfg.MaxUploadBytes, Logger: cfg.Logger, Registerer: n.registry, Gatherer: n.registry,
		Samples: NewSampleProcessor(), ProfileJSON: ProfileJSON,
		Extra: func(e *echo.Echo, s *api.Server) {
			drift.Register(e.Group("/api/v1"), n.drift, s.ReadMiddleware()...)
			dashboard.Register(e)
			if os.Getenv("DRIFTLINE_PPROF") != "" { // profiling for operators, off by default
				e.GET("/debug/pprof/*", echo.WrapHandler(http.DefaultServeMux))
			}
		},
		OnRolloutChanged: func(string) { n.rollouts.Wake() },
		AdvertiseMQTT:    n.advertisedMQTT(),
		OnDesiredChanged: func(id string) {
			if n.proto != nil {
				n.proto.DesiredChanged(id)
			}
		},
	})
	n.http = &http.Server{Handler: n.api.Handler(), ReadHeaderTimeout: 10 * time.Second}
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
	bg, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	if cfg.Join != "" {
		if err := n.join(ctx, advHTTP); err != nil {
			return nil, err
		}
	}
	n.wg.Add(4)
	go func() { defer n.wg.Done(); n.drift.Run(bg) }()
	go func() { defer n.wg.Done(); n.rollouts.Run(bg) }()
	go func() { defer n.wg.Done(); n.leaderChores(bg) }()
	n.wg.Add(1)
	go func() { defer n.wg.Done(); n.webhooks.Run(bg) }()
	n.wg.Add(1)
	go func() { defer n.wg.Done(); n.samples.Run(bg) }()
	go func() { defer n.wg.Done(); kv.RunGC(bg, n.db, 5*time.Minute, n.log) }()
	n.wg.Add(1)
	go func() { defer n.wg.Done(); kv.RunGC(bg, n.logDB, 5*time.Minute, n.log) }()
	n.log.Info("hub node started", "id", cfg.NodeID, "http", n.httpLn.Addr().String(), "raft", cfg.RaftAddr, "data", cfg.DataDir)
	ok = true
	return n, nil
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

// leaderChores runs while the node lives: whenever it is the leader it makes sure its signing key
// is registered and, on a cluster that has no token yet, creates the admin token.
func (n *Node) leaderChores(ctx context.Context) {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	keyDone, tokenDone := false, false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if keyDone && tokenDone {
			t.Reset(5 * time.Second)
			keyDone = false // re-check after a leader change: SigningKeyAdd is idempotent
		}
		if !n.store.IsLeader() {
			continue
		}
		if !keyDone {
			pub := n.key.Public().(ed25519.PublicKey)
			env, _ := command.New(command.TypeSigningKeyAdd, "", 0, "hub:"+n.cfg.NodeID,
				state.SigningKeyAdd{KeyID: artifact.KeyID(pub), PublicKey: artifact.PublicKeyBase64(pub)})
			if _, err := n.store.Apply(ctx, env); err == nil {
				keyDone = true
			} else {
				n.log.Warn("register signing key", "err", err)
			}
		}
		if !tokenDone {
			if err := n.ensureAdminToken(ctx); err != nil {
				n.log.Warn("create admin token", "err", err)
			} else {
				tokenDone = true
			}
		}
	}
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
	tok := api.NewToken()
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
	req := api.JoinRequest{ID: n.cfg.NodeID, Raft: n.store.RaftAddr(), HTTP: advHTTP}
	var resp api.JoinResponse
	if err := n.postJoin(ctx, req, &resp); err != nil {
		return fmt.Errorf("node: join %s: %w", n.cfg.Join, err)
	}
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := n.store.WaitApplied(wctx, resp.CommitIndex); err != nil {
		return fmt.Errorf("node: join: catching up to index %d: %w", resp.CommitIndex, err)
	}
	req.Promote = true
	if err := n.postJoin(ctx, req, &resp); err != nil {
		return fmt.Errorf("node: join %s (promote): %w", n.cfg.Join, err)
	}
	if err := n.createNodeToken(ctx); err != nil {
		return fmt.Errorf("node: join: %w", err)
	}
	n.log.Info("joined the cluster", "via", n.cfg.Join)
	return nil
}

func (n *Node) postJoin(ctx context.Context, req api.JoinRequest, out *api.JoinResponse) error {
	body, _ := json.Marshal(req)
	var last error
	for attempt := 0; attempt < 30; attempt++ {
		hr, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(n.cfg.Join, "/")+"/api/v1/cluster/join", bytes.NewReader(body))
		if err != nil {
			return err
		}
		hr.Header.Set("Content-Type", "application/json")
		hr.Header.Set("Authorization", "Bearer "+n.cfg.JoinToken)
		res, err := http.DefaultClient.Do(hr)
		if err == nil {
			b, _ := io.ReadAll(io.LimitReader(res.Body, 1<<20))
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return json.Unmarshal(b, out)
			}
			last = fmt.Errorf("%s: %s", res.Status, strings.TrimSpace(string(b)))
			if res.StatusCode != http.StatusServiceUnavailable {
				return last
			}
		} else {
			last = err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(200*(attempt+1)) * time.Millisecond):
		}
	}
	return last
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
