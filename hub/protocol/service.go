// Package protocol is the hub's side of the MQTT protocol (SPEC section 3): it publishes each
// device's retained `desired` state whenever it changes in the replicated state, answers `fetch`
// requests with `chunk` frames, and folds `status`, `heartbeat`, `reported`, `validation` and
// `drift` messages into device state with one batched Raft command per interval.
//
// Every hub node runs one Service against its own broker (embedded) or against the shared
// external broker. Publishing desired states is driven by the node's local FSM, so it works the
// same on the leader and on followers; telemetry batches are applied on the leader (a follower
// forwards them through Config.Apply).
package protocol

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/driftline/driftline/hub/command"
	"github.com/driftline/driftline/hub/state"
	"github.com/driftline/driftline/hub/store"
	"github.com/driftline/driftline/shared/wire"
)

// Transport is the hub's MQTT connection: the embedded broker's inline client or a paho client
// of an external broker. Handlers must not block; they run on the transport's goroutines, and
// get the messages of one topic in the order the broker delivered them (the hub keeps the last
// report a device sent).
type Transport interface {
	// Publish sends one message.
	Publish(topic string, payload []byte, retain bool, qos byte) error
	// Subscribe routes messages matching filter to handler.
	Subscribe(filter string, handler func(topic string, payload []byte)) error
}

// SharedSubscriber is a Transport whose subscriptions can be shared among the hub's nodes
// (MQTT shared subscriptions, $share/GROUP/FILTER): a client of an external broker that every
// node subscribes to. The service subscribes device reports and fetch requests so, and each is
// handled by one node instead of all of them.
type SharedSubscriber interface {
	SubscribeShared(filter string, handler func(topic string, payload []byte)) error
}

// PayloadCopier is a Transport whose Publish is done with the payload when it returns (it has
// copied what it keeps), so the caller may reuse the buffer: the service then encodes chunk
// frames into one buffer per worker instead of allocating one per frame. The embedded broker
// is one; a client of an external broker, which holds QoS 1 payloads until their PUBACK, is not.
type PayloadCopier interface {
	PublishCopiesPayload() bool
}

// SubscriberCounter is a Transport that knows how many subscribers a publish on a topic
// reaches (the embedded broker): the shared chunk fan-out paces by it.
type SubscriberCounter interface {
	Subscribers(topic string) int
}

// Metric names of the protocol service.
const (
	MetricChunkBytesServed = "driftline_hub_chunk_bytes_served_total"
	MetricChunkServeSecs   = "driftline_hub_chunk_serve_seconds"
	MetricFetchRequests    = "driftline_hub_fetch_requests_total"
	MetricDesiredPublished = "driftline_hub_desired_published_total"
	MetricTelemetryBatches = "driftline_hub_telemetry_batches_total"
	MetricDeviceMessages   = "driftline_hub_device_messages_total"
	MetricAcksPublished    = "driftline_hub_report_acks_published_total"
	// MetricChunkEgressBytes counts the bytes of chunk data frames the hub published, by path:
	// EgressShared (once per wave on a model's shared topic) or EgressDevice (on one device's
	// chunk topic: old agents, retries, stragglers and resumes).
	MetricChunkEgressBytes = "driftline_hub_chunk_egress_bytes_total"
	// MetricSharedChunkRequests counts the chunks of shared fetch requests by what became of
	// them: scheduled (a shared publish), joined (one was scheduled already), deduplicated (one
	// went out after the device started listening).
	MetricSharedChunkRequests = "driftline_hub_shared_chunk_requests_total"
	// MetricHeartbeats counts the heartbeats the hub took, by what became of them:
	// HeartbeatReplicated (in the next telemetry batch: a presence transition, the coarse
	// last_seen refresh, or news of the device in the batch anyway) or HeartbeatLocal (only this
	// node's last-heard time moved).
	MetricHeartbeats = "driftline_hub_heartbeats_total"
)

// Results of MetricHeartbeats.
const (
	HeartbeatReplicated = "replicated"
	HeartbeatLocal      = "local"
)

// Paths of MetricChunkEgressBytes.
const (
	EgressShared = "shared"
	EgressDevice = "device"
)

// Config configures a Service.
type Config struct {
	Transport Transport
	// DB is the node's database.
	DB *badger.DB
	// Changes is the node's change feed (store.Store.Changes): desired states, rollouts, keys
	// and report cursors that changed. Required.
	Changes *store.Feed
	Reader  state.Reader
	Topics  wire.Topics
	// Apply proposes a command (on the leader) or forwards it to the leader.
	Apply func(ctx context.Context, env command.Envelope) error
	// CatchUp, when set, returns once this node has applied every write the cluster committed
	// before the call (a barrier on the leader, the leader's read index on a follower). A fetch
	// for a digest this node does not have, or outside the device's scope as this node knows it,
	// calls it before answering not found: the device may have heard of a desired state this
	// node has not applied yet, and a not-found is final for its revision.
	CatchUp func(ctx context.Context) error
	// Interval is how often observed telemetry becomes one Raft command; default 1 s.
	Interval time.Duration
	// PresenceWindow is how long after a `status` saying online the hub waits for a heartbeat
	// (or any live message) before it shows the device offline; default DefaultPresenceWindow.
	// See telemetry.go.
	PresenceWindow time.Duration
	// LastSeenInterval is how often at most a live device's heartbeats move its replicated
	// last_seen (a Raft write on every node); between, they move only this node's in-memory
	// last-heard time (Service.LastHeard). Online/offline transitions, status, reported state
	// and window reports are replicated at once whatever it says. Default: PresenceWindow. See
	// telemetry.go.
	LastSeenInterval time.Duration
	// FetchWorkers answer fetch requests; default DefaultFetchWorkers. FetchQueue bounds queued
	// requests (default 1024); a request beyond it is dropped and counted (the agent retries).
	// Requests naming a shared topic have a queue of the same bound and a worker of their own:
	// they only book the device into its wave's publish, and are not held up (or dropped) behind
	// per-device chunks waiting on the broker.
	FetchWorkers, FetchQueue int
	// PerDeviceQueued bounds one device's queued fetch requests (default 8).
	PerDeviceQueued int
	// SharedDelay is how long a chunk asked for on a model's shared topic waits for more
	// devices' requests after the last one (default DefaultSharedDelay), SharedWait the longest
	// it waits after the first (default DefaultSharedWait, doubled for a chunk published again
	// within a minute); SharedGap is the least time between two shared publishes of one chunk
	// (default DefaultSharedGap). See shared.go.
	SharedDelay, SharedWait, SharedGap time.Duration
	// SharedCopyRate bounds, on a transport that copies what it publishes for each subscriber
	// (the embedded broker), the bytes of shared frames times their listeners published per
	// second (default DefaultSharedCopyRate).
	SharedCopyRate int
	// Keys signs desired states (the cluster's current online key). Required.
	Keys KeySource
	// DesiredTTL is how long a signed desired state is valid; default DefaultDesiredTTL.
	DesiredTTL time.Duration
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// Service runs the hub side of the protocol.
type Service struct {
	cfg     Config
	log     *slog.Logger
	m       *metrics
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	fetchCh chan fetchJob
	// sharedCh queues the requests naming a shared topic (fetch.go).
	sharedCh chan fetchJob
	// objCh queues the requests for objects of the object cache (objects.go).
	objCh   chan fetchJob
	objects objectCache
	tele    *telemetry
	desired *desiredPublisher
	acks    *ackPublisher
	shared  *sharedFanout
	// rollouts are the rollouts to publish again; rolloutsAll asks for all of them.
	rollouts    *dirtySet
	rolloutsAll chan struct{}

	queuedMu sync.Mutex
	queued   map[string]int
	// chunkSets caches the chunk digests of manifests, for fetch scopes.
	chunkSets chunkSets
}

// Start subscribes to the device topics and starts the workers.
func Start(cfg Config) (*Service, error) {
	if cfg.Transport == nil || cfg.DB == nil || cfg.Apply == nil || cfg.Keys == nil || cfg.Changes == nil {
		return nil, errors.New("protocol: transport, db, apply, keys and changes are required")
	}
	if cfg.Topics == (wire.Topics{}) {
		cfg.Topics = wire.Default()
	}
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	if cfg.PresenceWindow <= 0 {
		cfg.PresenceWindow = DefaultPresenceWindow
	}
	if cfg.LastSeenInterval <= 0 {
		cfg.LastSeenInterval = cfg.PresenceWindow
	}
	if cfg.FetchWorkers <= 0 {
		cfg.FetchWorkers = DefaultFetchWorkers
	}
	if cfg.FetchQueue <= 0 {
		cfg.FetchQueue = 1024
	}
	if cfg.PerDeviceQueued <= 0 {
		cfg.PerDeviceQueued = 8
	}
	if cfg.SharedDelay <= 0 {
		cfg.SharedDelay = DefaultSharedDelay
	}
	if cfg.SharedWait <= 0 {
		cfg.SharedWait = DefaultSharedWait
	}
	if cfg.SharedWait < cfg.SharedDelay {
		cfg.SharedWait = cfg.SharedDelay
	}
	if cfg.SharedGap <= 0 {
		cfg.SharedGap = DefaultSharedGap
	}
	if cfg.SharedCopyRate <= 0 {
		cfg.SharedCopyRate = DefaultSharedCopyRate
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Service{
		cfg: cfg, log: cfg.Logger, m: newMetrics(cfg.Registerer), cancel: cancel,
		queued: map[string]int{},
	}
	s.makeFetchQueues()
	s.tele = newTelemetry(s)
	s.desired = newDesiredPublisher(s)
	s.acks = newAckPublisher(s)
	s.shared = newSharedFanout(s)
	s.rollouts, s.rolloutsAll = newDirtySet(), make(chan struct{}, 1)
	// Subscribed before anything runs: its first change is the reset that makes the
	// publishers' first full pass.
	sub := cfg.Changes.Subscribe()
	subscribe := cfg.Transport.Subscribe
	if sh, ok := cfg.Transport.(SharedSubscriber); ok {
		subscribe = sh.SubscribeShared
	}
	for _, k := range []wire.Kind{wire.KindStatus, wire.KindHeartbeat, wire.KindReported, wire.KindValidation, wire.KindDrift, wire.KindFetch,
		wire.KindPredictionDrift, wire.KindPerformance} {
		if err := subscribe(cfg.Topics.AllDevices(k), s.handle); err != nil {
			cancel()
			sub.Close()
			return nil, err
		}
	}
	s.startFetchWorkers(ctx)
	s.wg.Add(6)
	go func() { defer s.wg.Done(); s.shared.run(ctx) }()
	go func() { defer s.wg.Done(); s.watchChanges(ctx, sub) }()
	go func() { defer s.wg.Done(); s.acks.run(ctx) }()
	go func() { defer s.wg.Done(); s.runRolloutPublisher(ctx) }()
	go func() { defer s.wg.Done(); s.tele.run(ctx) }()
	go func() { defer s.wg.Done(); s.desired.run(ctx) }()
	return s, nil
}

// DefaultFetchWorkers is Config.FetchWorkers' default. Answering a fetch request mostly waits:
// on the state store's reads (each waits for the commits in flight) and on the broker. With 4
// workers the hub answered ~70 requests a second to a 10,000-agent fleet's wave (a manifest, a
// contract and a profile per device, 2026-12-07) with its CPU half idle, and its queue overflowed
// into dropped requests and agents' retries.
const DefaultFetchWorkers = 16

// startFetchWorkers starts cfg.FetchWorkers workers answering fetchCh until ctx ends.
func (s *Service) startFetchWorkers(ctx context.Context) {
	for i := 0; i < s.cfg.FetchWorkers; i++ {
		s.wg.Add(1)
		go func() { defer s.wg.Done(); s.fetchWorker(ctx, s.fetchCh) }()
	}
	s.wg.Add(1)
	go func() { defer s.wg.Done(); s.fetchWorker(ctx, s.sharedCh) }()
	for range DefaultObjectWorkers {
		s.wg.Add(1)
		go func() { defer s.wg.Done(); s.fetchWorker(ctx, s.objCh) }()
	}
}

// LastHeard returns when this node last received a live message (a heartbeat or a window
// report) of device id, Unix ms, 0 when it has not since it started. It may be later than the
// replicated last_seen, which live messages move only every Config.LastSeenInterval: an API
// answer merges it (the later of the two).
func (s *Service) LastHeard(id string) int64 { return s.tele.lastHeard(id) }

// Close stops the workers, flushing pending telemetry once.
func (s *Service) Close() {
	s.cancel()
	s.wg.Wait()
}

// handle routes one device message. It never blocks: work is queued or folded into the pending
// telemetry batch.
func (s *Service) handle(topic string, payload []byte) {
	kind, id, _, err := s.cfg.Topics.Parse(topic)
	if err != nil {
		s.m.messages.WithLabelValues("unknown", "rejected").Inc()
		s.log.Debug("message on unknown topic", "topic", topic, "err", err)
		return
	}
	ok := true
	switch kind {
	case wire.KindFetch:
		ok = s.enqueueFetch(id, payload)
	case wire.KindStatus, wire.KindHeartbeat, wire.KindReported, wire.KindValidation, wire.KindDrift,
		wire.KindPredictionDrift, wire.KindPerformance:
		ok = s.tele.observe(kind, id, payload)
	default:
		ok = false
	}
	result := "ok"
	if !ok {
		result = "rejected"
	}
	s.m.messages.WithLabelValues(kind.String(), result).Inc()
}

type metrics struct {
	chunkBytes *prometheus.CounterVec
	serveSecs  prometheus.Histogram
	fetches    *prometheus.CounterVec
	desired    prometheus.Counter
	batches    *prometheus.CounterVec
	messages   *prometheus.CounterVec
	acks       prometheus.Counter
	egress     *prometheus.CounterVec
	shared     *prometheus.CounterVec
	heartbeats *prometheus.CounterVec
	// hbReplicated and hbLocal are heartbeats' two series, resolved once (one per message).
	hbReplicated, hbLocal prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		chunkBytes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricChunkBytesServed,
			Help: "Bytes of chunk frames sent to agents, by object kind."}, []string{"kind"}),
		serveSecs: prometheus.NewHistogram(prometheus.HistogramOpts{Name: MetricChunkServeSecs,
			Help: "Time to answer one fetch request.", Buckets: prometheus.ExponentialBuckets(0.0005, 2.5, 12)}),
		fetches: prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricFetchRequests,
			Help: "Fetch requests by result (served, dropped, bad, out_of_scope, caught_up, catch_up_failed)."}, []string{"result"}),
		desired: prometheus.NewCounter(prometheus.CounterOpts{Name: MetricDesiredPublished,
			Help: "Retained desired-state messages published."}),
		batches: prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricTelemetryBatches,
			Help: "Telemetry batches proposed, by result."}, []string{"result"}),
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricDeviceMessages,
			Help: "Device messages the hub handled, by topic kind and result."}, []string{"topic_kind", "result"}),
		acks: prometheus.NewCounter(prometheus.CounterOpts{Name: MetricAcksPublished,
			Help: "Acknowledgements of numbered reports sent to agents."}),
		egress: prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricChunkEgressBytes,
			Help: "Bytes of chunk data frames published, by path (shared: once per wave on a model's topic; device: per device)."}, []string{"path"}),
		shared: prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricSharedChunkRequests,
			Help: "Chunks of shared fetch requests, by result (scheduled, joined, deduplicated; all_listening: sent at once, every listener having asked)."}, []string{"result"}),
		heartbeats: prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricHeartbeats,
			Help: "Heartbeats taken, by result (replicated: in the next telemetry batch; local: only this node's last-heard time moved)."}, []string{"result"}),
	}
	m.egress.WithLabelValues(EgressShared) // both paths shown from the start, at 0
	m.egress.WithLabelValues(EgressDevice)
	m.hbReplicated = m.heartbeats.WithLabelValues(HeartbeatReplicated)
	m.hbLocal = m.heartbeats.WithLabelValues(HeartbeatLocal)
	if reg != nil {
		reg.MustRegister(m.chunkBytes, m.serveSecs, m.fetches, m.desired, m.batches, m.messages, m.acks, m.egress, m.shared, m.heartbeats)
	}
	return m
}
