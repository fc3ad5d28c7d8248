// Package agent is the edge runtime of driftline-agent: one Agent per device connects to the
// broker over MQTT, acts on the hub's desired state (pulls, verifies and activates model
// versions), reports what runs, sends heartbeats, and forwards every report through the
// store-and-forward outbox. Everything it keeps lives in the devicedb.Namespace it is given, so
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
	"github.com/driftline/driftline/agent/devicedb"
	"github.com/driftline/driftline/agent/modelstore"
	"github.com/driftline/driftline/agent/outbox"
	"github.com/driftline/driftline/agent/reconcile"
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
	// OnChunk, when set, is called after each fetched chunk is verified and stored (progress
	// displays and crash tests).
	OnChunk func()
	// Failpoint, when set, is called at each named step of a pull and an activation: "manifest"
	// (the manifest fetched and verified), "reported" (a reported state queued in the outbox),
	// and modelstore's steps (modelstore.Options.Failpoint). Crash tests kill the process there.
	Failpoint func(step string)
	// NoRSSGauge leaves out driftline_agent_rss_bytes (fleet mode registers it once).
	NoRSSGauge bool
	// PullSlots, when not nil, bounds the pulls that ask for chunks on their own topic at once: a
	// pull holds one slot (a value sent into the channel) from then until its file is staged.
	// Fleet mode shares one among its agents, so that the frames and buffers of thousands of
	// simultaneous pulls do not all sit in one process's memory. A pull listening on its model's
	// shared topic needs none until that brings it nothing (agent/DESIGN.md).
	PullSlots chan struct{}
	// ListenBudget, when not nil, bounds the bytes the pulls sharing it may hold while they
	// listen on their model's shared chunk topic (each is charged twice its model's size, from
	// the subscription to the end of its download): every listener takes every publish of the
	// wave, which in one fleet process is thousands of copies. Fleet mode shares one among its
	// agents; a device has its own memory and needs none.
	ListenBudget *reconcile.Budget
	// PullStages, when set, receives the pull-stage observations (MetricPullStages) instead
	// of a histogram the agent registers itself: fleet mode shares one among its agents.
	PullStages prometheus.ObserverVec
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

	ns    devicedb.Namespace
	out   *outbox.Outbox
	store *modelstore.Store
	conn  *conn
	rec   *reconcile.Reconciler
	m     *metrics

	mux  *http.ServeMux
	addr atomic.Value // string: the listener's address once Run serves it
	reg  prometheus.Registerer

	// reportedStale is the desired_stale the last reported state carried (heartbeat loop only).
	reportedStale bool
	// reportedRootExpired is the root_expired the last reported state carried (heartbeat loop
	// only).
	reportedRootExpired bool
	ran                 bool
	exts                []Extension // AddExtension

	// reportMu orders the reported states: report numbers each snapshot under it
	// (reportTaken) and queues a snapshot only if none taken after it is queued already
	// (reportQueued). report runs on several goroutines (the reconciler's changes, every
	// connect, the heartbeat loop); without this a snapshot taken before a change could be
	// queued after the change's own, and the retained reported state would stay stale.
	reportMu     sync.Mutex
	reportTaken  uint64
	reportQueued uint64
	// reportHeld, when set (tests only), is called by report between its snapshot and
	// its queueing.
	reportHeld func()
	// reportKick asks the connected loop for the reconciler's records and a report (1-slot:
	// changes that come while one is being queued are reported together); reportLoopOn says
	// the loop runs (Run).
	reportKick   chan struct{}
	reportLoopOn atomic.Bool
}

// New validates cfg and opens the agent's stores inside ns (children "agent", "assets",
// "outbox", "chunks", "models"). It connects nothing; Run does.
func New(cfg config.Config, ns devicedb.Namespace, opts Options) (*Agent, error) {
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
		started: time.Now(), ns: ns, mux: http.NewServeMux(), reg: reg, reportKick: make(chan struct{}, 1),
	}
	if a.m, err = newMetrics(reg, Version, !opts.NoRSSGauge); err != nil {
		return nil, err
	}
	stages := opts.PullStages
	if stages == nil {
		h := NewPullStages()
		if err := reg.Register(h); err != nil {
			return nil, fmt.Errorf("register agent metrics: %w", err)
		}
		stages = h
	}
	own := ns.Sub("agent") // trust, model records, desired revision
	if a.trust, err = newTrustStore(own, root, keys); err != nil {
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
	cache, err := chunkcache.Open(ns.Sub("chunks"), chunkcache.Options{MaxBytes: cfg.ChunkCacheBytes, Logger: a.log})
	if err != nil {
		return nil, err
	}
	a.store, err = modelstore.Open(ns.Sub("models"), modelstore.Options{
		Dir: cfg.ModelDir, Health: modelstore.HealthCheck{Argv: cfg.HealthCheck.Command, Timeout: cfg.HealthCheck.Timeout.D()}, Logger: a.log,
		BeforeRemove: func(v modelstore.Version, kept []modelstore.Version) { a.rec.KeepChunks(v, kept) }, Failpoint: opts.Failpoint,
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
	if a.conn, err = newConn(cfg, topics, a.m, a.log, a.started, Version, pace); err != nil {
		return nil, err
	}
	a.conn.onRefused = opts.OnConnectRefused
	a.conn.onFrameBytes = func(n int) { a.m.fetchedBytes.Add(float64(n)) }
	a.conn.acceptDesired = a.acceptDesired
	a.rec = reconcile.New(reconcile.Config{
		DeviceID: cfg.DeviceID, Topics: topics, Fetch: cfg.Fetch, Logger: a.log,
		Metrics: reconcile.Metrics{FetchedChunks: a.m.fetchedChunks, ChunksReused: a.m.chunksReused,
			Activations: a.m.activations, Rejected: a.m.rejected, PullStages: stages},
		Conn: a.conn, Trust: reconcileTrust{a}, Store: a.store, Cache: cache, Assets: ns.Sub("assets"), Records: own,
		PullSlots: opts.PullSlots, ListenBudget: opts.ListenBudget, OnChunk: opts.OnChunk, Failpoint: opts.Failpoint, OnChange: a.reportSoon,
	})
	a.mux.Handle("GET /metrics", promhttp.HandlerFor(gat, promhttp.HandlerOpts{}))
	a.mux.HandleFunc("GET /status", a.serveStatus)
	return a, nil
}

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

// failpoint calls Options.Failpoint at step.
func (a *Agent) failpoint(step string) {
	if a.opts.Failpoint != nil {
		a.opts.Failpoint(step)
	}
}

// report queues the retained reported state: the reconciler's records (the active and previous
// versions as read from MODELDIR) with the trust flags. It is safe to call from any goroutine:
// the outbox receives the snapshots in the order they were taken, and a snapshot that a newer
// one overtook is not queued, so the last reported state queued is never older than the last
// change (docs/reliability.md, the stale "activating" after a restart).
func (a *Agent) report() {
	a.reportMu.Lock()
	now := time.Now()
	rev, models := a.rec.Reported()
	rep := wire.Reported{Header: wire.Header{DeviceID: a.cfg.DeviceID, TS: now.UnixMilli()}, Rev: rev, AgentVersion: Version, Models: models}
	rep.DesiredStale, _ = a.trust.stale(now)
	rep.RootExpired = a.trust.rootExpiry(now) != nil
	a.reportTaken++
	seq := a.reportTaken
	a.reportMu.Unlock()
	b, err := wire.Encode(rep)
	if err != nil {
		a.log.Error("encode reported state", "err", err)
		return
	}
	if a.reportHeld != nil {
		a.reportHeld()
	}
	a.reportMu.Lock()
	if seq < a.reportQueued {
		// A snapshot taken after this one is queued: this one is stale, and queueing it
		// would make the broker retain (and the hub keep) what no longer holds.
		queued := a.reportQueued
		a.reportMu.Unlock()
		a.log.Debug("stale reported state not queued", "taken", seq, "queued", queued)
		return
	}
	err = a.out.Enqueue(a.topics.Reported(a.cfg.DeviceID), b, wire.KindReported.QoS(), wire.KindReported.Retained())
	if err == nil {
		a.reportQueued = seq
	}
	a.reportMu.Unlock()
	if err != nil {
		a.log.Error("queue reported state", "err", err)
		return
	}
	a.failpoint("reported")
}

// reportSoon is the reconciler's OnChange: while Run runs, the connected loop writes the
// reconciler's changed records and queues the reported state, so a state change or download
// progress never waits for those commits (in a fleet process they queue behind thousands of
// agents' commits; on a device behind slow flash), and changes made meanwhile go out in one
// report that says what holds then. Before Run (and after it) it reports at once.
func (a *Agent) reportSoon() {
	if !a.reportLoopOn.Load() {
		a.report()
		return
	}
	select {
	case a.reportKick <- struct{}{}:
	default: // a report is due already: it will take this change's snapshot
	}
}

// reportChanges writes the reconciler's records its changes left to be written, then queues
// the reported state.
func (a *Agent) reportChanges() {
	a.rec.FlushRecords()
	a.report()
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

// Run recovers MODELDIR, starts the HTTP listener, connects and runs the reconciler, the
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
	if err := a.rec.Load(recs); err != nil {
		return err
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
	a.reportLoopOn.Store(true)
	a.rec.SetWriteBehind(true)
	spawn(a.connectedLoop)
	spawn(a.rec.Run)
	spawn(a.loop)
	for _, x := range a.exts {
		spawn(x.Run)
	}
	spawn(a.conn.run)
	a.report()

	<-ctx.Done()
	cancel()
	wg.Wait()
	// A record the reconciler marked after connectedLoop's last flush (it read write-behind as
	// on just before the loop turned it off) is written now that nothing runs beside it.
	a.rec.FlushRecords()
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
			// What the reconciler changed last: written and reported now, and at once from
			// here on.
			a.reportLoopOn.Store(false)
			a.rec.SetWriteBehind(false)
			a.rec.FlushRecords()
			select {
			case <-a.reportKick:
				a.report()
			default:
			}
			return
		case <-a.reportKick:
			a.reportChanges()
			continue
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

// ack hands one acknowledgement of the hub to the outbox.
func (a *Agent) ack(b []byte) {
	ack, err := wire.DecodeAck(b)
	if err == nil {
		err = ack.MatchTopic(a.cfg.DeviceID)
	}
	if err != nil {
		a.reject(ReasonMalformedAck, "bad ack from the hub", "err", err)
		return
	}
	if err := a.out.HubAck(ack); err != nil {
		a.log.Error("apply the hub's ack", "err", err)
	}
}
