// Package agent is the edge runtime of driftline-agent: one Agent per device connects to the
// broker over MQTT, acts on the hub's desired state (pulls, verifies and activates model
// versions), reports what runs, sends heartbeats, and forwards every report through the
// store-and-forward outbox. Everything it keeps lives in the state.Namespace it is given, so
// fleet mode runs thousands of Agents on one shared database. DESIGN.md has the invariants.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/driftline/driftline/agent/chunkcache"
	"github.com/driftline/driftline/agent/config"
	"github.com/driftline/driftline/agent/modelstore"
	"github.com/driftline/driftline/agent/outbox"
	"github.com/driftline/driftline/agent/state"
	"github.com/driftline/driftline/shared/wire"
)

// Version is the agent's build version, set with -ldflags "-X
// github.com/driftline/driftline/agent.Version=...".
var Version = "dev"

// Options are what New needs beside the Config. Zero values take the defaults.
type Options struct {
	// Logger receives the agent's logs (default slog.Default()).
	Logger *slog.Logger
	// Registerer receives the agent's collectors. Default: a new registry, served on GET
	// /metrics. Fleet mode passes prometheus.WrapRegistererWith(device label, shared registry)
	// and sets Config.Metrics to "off".
	Registerer prometheus.Registerer
	// Gatherer is what GET /metrics serves (default: the registry created for Registerer, or
	// prometheus.DefaultGatherer when Registerer was given).
	Gatherer prometheus.Gatherer
	// OnData, when set, receives each message of the device's data topic, on one agent
	// goroutine, in order (the data pipeline's ingestion). The payload is the caller's.
	OnData func(payload []byte)
	// Stats, when set, supplies the pipeline's counters for heartbeats.
	Stats func() PipelineStats
	// OnChunk, when set, is called after each fetched chunk is verified and stored (progress
	// displays and crash tests).
	OnChunk func()
	// Failpoint, when set, is called at each named step of a pull and an activation: "manifest"
	// (the manifest fetched and verified), "reported" (a reported state queued in the outbox),
	// and modelstore's steps (modelstore.Options.Failpoint). Crash tests kill the process there.
	Failpoint func(step string)
	// NoRSSGauge leaves out driftline_agent_rss_bytes (fleet mode registers it once).
	NoRSSGauge bool
	// PullSlots, when not nil, bounds the pulls that run at once: a pull holds one slot (a value
	// sent into the channel) from its manifest request until its file is staged. Fleet mode
	// shares one among its agents, so that the frames and buffers of thousands of simultaneous
	// pulls do not all sit in one process's memory.
	PullSlots chan struct{}
	// ConnectBackoff is the first wait after a connect attempt that reached no broker; it
	// doubles up to MaxConnectBackoff (default DefaultConnectBackoff).
	ConnectBackoff time.Duration
	// RefusedBackoff is the first wait after a CONNECT the broker refused (bad token, not
	// authorised); it doubles up to RefusedBackoffMax (defaults DefaultRefusedBackoff and
	// DefaultRefusedBackoffMax). Every wait is jittered into [d/2, d].
	RefusedBackoff, RefusedBackoffMax time.Duration
	// OnConnectRefused, when set, is called after every refused CONNECT, on the connect loop's
	// goroutine (it delays the next attempt while it runs). Fleet mode re-enrols a device the
	// hub no longer knows from here (SetToken).
	OnConnectRefused func(Refusal)
}

// Agent is one device's runtime. New prepares it; Run runs it until its context ends.
type Agent struct {
	cfg     config.Config
	opts    Options
	log     *slog.Logger
	topics  wire.Topics
	trust   *trustStore
	started time.Time

	ns     state.Namespace
	own    state.Namespace // records, revision
	assets state.Namespace // manifests, contracts, profiles by digest
	out    *outbox.Outbox
	cache  *chunkcache.Cache
	store  *modelstore.Store
	conn   *conn
	fetch  *fetcher
	m      *metrics

	mux      *http.ServeMux
	addr     atomic.Value // string: the listener's address once Run serves it
	gatherer prometheus.Gatherer
	reg      prometheus.Registerer

	mu           sync.Mutex
	models       map[string]*modelRecord
	reportRev    uint64
	lastProgress time.Time

	activeKey   string // what activeCache holds (Active)
	activeCache ActiveModel
	outputKey   string // what outputCache holds (Output)
	outputCache []byte

	lastRev uint64 // desired loop only
	// reportedStale is the desired_stale the last reported state carried (heartbeat loop only).
	reportedStale bool
	// reportedRootExpired is the root_expired the last reported state carried (heartbeat loop
	// only).
	reportedRootExpired bool
	retry               bool          // desired loop only: a model of the current revision failed transiently
	retryMin            time.Duration // first wait before a failed revision is tried again
	ran                 bool
	extra               []func(context.Context)
}

// New validates cfg and opens the agent's stores inside ns (children "agent", "assets",
// "outbox", "chunks", "models"). It connects nothing; Run does.
func New(cfg config.Config, ns state.Namespace, opts Options) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	keys, err := cfg.Keys()
	if err != nil {
		return nil, err
	}
	root, err := cfg.Root()
	if err != nil {
		return nil, err
	}
	topics, err := wire.NewTopics(cfg.TopicPrefix)
	if err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	reg, gat := opts.Registerer, opts.Gatherer
	if reg == nil {
		r := prometheus.NewRegistry()
		reg = r
		if gat == nil {
			gat = r
		}
	}
	if gat == nil {
		gat = prometheus.DefaultGatherer
	}
	a := &Agent{
		cfg: cfg, opts: opts, log: opts.Logger.With("device", cfg.DeviceID), topics: topics,
		started: time.Now(), ns: ns, own: ns.Sub("agent"), assets: ns.Sub("assets"),
		models: map[string]*modelRecord{}, mux: http.NewServeMux(), gatherer: gat, reg: reg,
	}
	if a.m, err = newMetrics(reg, Version, !opts.NoRSSGauge); err != nil {
		return nil, err
	}
	if a.trust, err = newTrustStore(a.own, root, keys); err != nil {
		return nil, err
	}
	if err := a.trust.register(reg); err != nil {
		return nil, err
	}
	a.out, err = outbox.Open(ns.Sub("outbox"), outbox.Options{
		MaxBytes: cfg.Buffer.MaxBytes, MaxAge: cfg.Buffer.MaxAge.D(), RetryMin: 100 * time.Millisecond, RetryMax: 2 * time.Second,
		Logger: a.log, Registerer: reg, Numbered: a.numbered,
	})
	if err != nil {
		return nil, err
	}
	if a.cache, err = chunkcache.Open(ns.Sub("chunks"), chunkcache.Options{MaxBytes: cfg.ChunkCacheBytes, Logger: a.log}); err != nil {
		return nil, err
	}
	a.store, err = modelstore.Open(ns.Sub("models"), modelstore.Options{
		Dir: cfg.ModelDir, Health: modelstore.HealthCheck{Argv: cfg.HealthCheck.Command, Timeout: cfg.HealthCheck.Timeout.D()}, Logger: a.log,
		BeforeRemove: a.keepChunks, Failpoint: opts.Failpoint,
	})
	if err != nil {
		return nil, err
	}
	pace := pacing{netMin: opts.ConnectBackoff, netMax: MaxConnectBackoff, refusedMin: opts.RefusedBackoff, refusedMax: opts.RefusedBackoffMax}
	if pace.netMin <= 0 {
		pace.netMin = DefaultConnectBackoff
	}
	pace.netMax = max(pace.netMax, pace.netMin)
	if pace.refusedMin <= 0 {
		pace.refusedMin = DefaultRefusedBackoff
	}
	if pace.refusedMax <= 0 {
		pace.refusedMax = DefaultRefusedBackoffMax
	}
	pace.refusedMax = max(pace.refusedMax, pace.refusedMin)
	if a.conn, err = newConn(cfg, topics, a.m, a.log, a.started, Version, opts.OnData != nil, pace); err != nil {
		return nil, err
	}
	a.conn.onRefused = opts.OnConnectRefused
	a.conn.onFrameBytes = func(n int) { a.m.fetchedBytes.Add(float64(n)) }
	a.conn.acceptDesired = a.acceptDesired
	a.fetch = newFetcher(a)
	a.retryMin = cfg.Fetch.Retry.D()
	a.mux.Handle("GET /metrics", promhttp.HandlerFor(gat, promhttp.HandlerOpts{}))
	a.mux.HandleFunc("GET /status", a.serveStatus)
	return a, nil
}

// Handle registers an HTTP handler on the agent's listener (the metrics address) before Run:
// the pipeline adds POST /ingest here.
func (a *Agent) Handle(pattern string, h http.Handler) { a.mux.Handle(pattern, h) }

// MetricsAddr returns the address GET /metrics (and the agent's other local endpoints) listen
// on once Run has started serving, else "" (not yet, or Config.Metrics is "off").
func (a *Agent) MetricsAddr() string {
	s, _ := a.addr.Load().(string)
	return s
}

// Registerer returns where the agent's collectors are registered, for an extension's own (they
// are served on the same GET /metrics).
func (a *Agent) Registerer() prometheus.Registerer { return a.reg }

// Config returns the agent's configuration.
func (a *Agent) Config() config.Config { return a.cfg }

// Topics returns the topic builder under the configured prefix.
func (a *Agent) Topics() wire.Topics { return a.topics }

// Logger returns the agent's logger.
func (a *Agent) Logger() *slog.Logger { return a.log }

// Send queues a report of kind k (validation, drift, drift/{feature} with feature set, profile,
// ...) for the broker through the outbox: kept on disk while the broker is unreachable and sent
// in order, within the buffer's bounds. It refuses kinds only the hub may publish.
func (a *Agent) Send(k wire.Kind, feature string, payload []byte) error {
	var topic string
	switch k {
	case wire.KindValidation:
		topic = a.topics.Validation(a.cfg.DeviceID)
	case wire.KindDrift:
		topic = a.topics.Drift(a.cfg.DeviceID)
	case wire.KindDriftFeature:
		if err := wire.ValidateName("feature", feature); err != nil {
			return err
		}
		topic = a.topics.DriftFeature(a.cfg.DeviceID, feature)
	case wire.KindProfile:
		topic = a.topics.Profile(a.cfg.DeviceID)
	case wire.KindHeartbeat:
		topic = a.topics.Heartbeat(a.cfg.DeviceID)
	default:
		return fmt.Errorf("agent: %v is not a report kind the agent sends", k)
	}
	return a.out.Enqueue(topic, payload, k.QoS(), k.Retained())
}

// failpoint calls Options.Failpoint at step.
func (a *Agent) failpoint(step string) {
	if a.opts.Failpoint != nil {
		a.opts.Failpoint(step)
	}
}

// BufferStats returns the outbox's depth, bytes and counters.
func (a *Agent) BufferStats() outbox.Stats { return a.out.Stats() }

// Connected reports whether the MQTT connection is up.
func (a *Agent) Connected() bool { return a.conn.up.Load() }

// Connection returns the MQTT connection's state: up or not, the broker, and while down the
// last error, whether the broker refuses the device's CONNECT and why, and the next attempt.
func (a *Agent) Connection() ConnStatus { return a.conn.status() }

// SetToken replaces the device token (the MQTT password) for the next connect and cuts the
// wait before it short. The running connection, if any, is not touched.
func (a *Agent) SetToken(token string) { a.conn.setToken(token) }

// reject counts refused input and logs why.
func (a *Agent) reject(reason, msg string, args ...any) {
	a.m.rejected.WithLabelValues(reason).Inc()
	a.log.Warn(msg, append([]any{"reason", reason}, args...)...)
}

// Run recovers MODELDIR, starts the HTTP listener, connects and runs the desired loop, the
// outbox sender and the heartbeat until ctx ends; then it publishes the offline status,
// disconnects and returns nil. It returns an error only when start-up fails. Run may be called
// once.
func (a *Agent) Run(ctx context.Context) error {
	if a.ran {
		return errors.New("agent: Run called twice")
	}
	a.ran = true
	recs, err := a.store.Recover(ctx)
	if err != nil {
		return fmt.Errorf("recover model directory: %w", err)
	}
	if err := a.loadRecords(); err != nil {
		return err
	}
	for _, r := range recs {
		a.log.Warn("model directory recovered", "model", r.Name, "action", r.Action, "current", r.Current, "err", r.Err)
		if r.Action == modelstore.ActionRolledBack {
			a.m.activations.WithLabelValues(ResultFailed).Inc()
			msg := "activation interrupted and rolled back"
			if r.Err != nil {
				msg = r.Err.Error()
			}
			a.setState(r.Name, wire.StateFailed, func(rec *modelRecord) { rec.LastError = msg })
		}
	}
	if err := a.adoptDisk(); err != nil {
		return err
	}
	a.mu.Lock()
	names := make([]string, 0, len(a.models))
	for n := range a.models {
		names = append(names, n)
	}
	a.reportRev = a.lastRev
	a.mu.Unlock()
	for _, n := range names {
		a.refreshLinks(n)
		if modelstore.ValidName(n) == nil {
			a.releasePins(n)
		}
	}

	var srv *http.Server
	if a.cfg.Metrics != config.MetricsOff {
		ln, err := net.Listen("tcp", a.cfg.Metrics)
		if err != nil {
			return fmt.Errorf("metrics listener: %w", err)
		}
		srv = &http.Server{Handler: a.mux, ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				a.log.Error("metrics listener", "err", err)
			}
		}()
		a.addr.Store(ln.Addr().String())
		a.log.Info("serving metrics", "addr", ln.Addr().String())
	}

	runCtx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	spawn := func(f func(context.Context)) {
		wg.Add(1)
		go func() { defer wg.Done(); f(runCtx) }()
	}
	spawn(func(ctx context.Context) {
		if err := a.out.Run(ctx, a.conn); err != nil && !errors.Is(err, context.Canceled) {
			a.log.Error("report sender stopped", "err", err)
		}
	})
	spawn(a.connectedLoop)
	spawn(a.ackLoop)
	spawn(a.desiredLoop)
	spawn(a.heartbeatLoop)
	if a.opts.OnData != nil {
		spawn(a.dataLoop)
	}
	for _, f := range a.extra {
		spawn(f)
	}
	spawn(a.conn.run)
	a.report()

	<-ctx.Done()
	cancel()
	wg.Wait()
	offline, _ := wire.Encode(wire.Status{Header: wire.Header{DeviceID: a.cfg.DeviceID, TS: time.Now().UnixMilli()},
		Online: false, AgentVersion: Version, StartedTS: a.started.UnixMilli(), Reason: wire.ReasonStop})
	a.conn.close(offline)
	if srv != nil {
		sctx, scancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = srv.Shutdown(sctx)
		scancel()
	}
	a.log.Info("agent stopped")
	return nil
}

// connectedLoop publishes the online status after every connect, and queues the reported state
// again (a broker without persistence forgets retained messages when it restarts).
func (a *Agent) connectedLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.conn.connected:
		}
		// What the broker acknowledged before may be lost with it: numbered reports the hub
		// has not acknowledged go again.
		a.out.Rewind()
		b, err := wire.Encode(wire.Status{Header: wire.Header{DeviceID: a.cfg.DeviceID, TS: time.Now().UnixMilli()},
			Online: true, AgentVersion: Version, StartedTS: a.started.UnixMilli(), Reason: wire.ReasonConnect})
		if err != nil {
			a.log.Error("encode status", "err", err)
			continue
		}
		for attempt := 0; attempt < 5; attempt++ {
			err = a.conn.publish(ctx, a.topics.Status(a.cfg.DeviceID), b, 1, true, 10*time.Second)
			if err == nil || ctx.Err() != nil || errors.Is(err, ErrNotConnected) {
				break
			}
		}
		if err != nil {
			a.log.Warn("online status not sent", "err", err)
		}
		a.report()
	}
}

// numbered says which reports the hub acknowledges end to end: the ones whose counts it stores
// (validation, drift, prediction_drift, performance; docs/telemetry.md, "Delivery", says why the
// others need not be).
func (a *Agent) numbered(topic string) bool {
	k, id, _, err := a.topics.Parse(topic)
	if err != nil || id != a.cfg.DeviceID {
		return false
	}
	switch k {
	case wire.KindValidation, wire.KindDrift, wire.KindPredictionDrift, wire.KindPerformance:
		return true
	}
	return false
}

// ackLoop hands the hub's acknowledgements to the outbox.
func (a *Agent) ackLoop(ctx context.Context) {
	for {
		var b []byte
		select {
		case <-ctx.Done():
			return
		case b = <-a.conn.acks:
		}
		ack, err := wire.DecodeAck(b)
		if err == nil {
			err = ack.MatchTopic(a.cfg.DeviceID)
		}
		if err != nil {
			a.reject(ReasonMalformedAck, "bad ack from the hub", "err", err)
			continue
		}
		if err := a.out.HubAck(ack); err != nil {
			a.log.Error("apply the hub's ack", "err", err)
		}
	}
}

// dataLoop hands data-topic messages to Options.OnData, in order.
func (a *Agent) dataLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case b := <-a.conn.data:
			a.opts.OnData(b)
		}
	}
}
