// Package reconcile brings a device's models to the hub's desired state: desired → pull →
// assemble → activate. A Reconciler owns the model records (what each model reported last and
// what its running version brought), the desired revision acted on, and the pulls; it is handed
// what it works with: the MQTT connection (Conn), the device's root of trust (Trust), the model
// store, the chunk cache and the asset store. It imports nothing of package agent, which wires
// it (agent.New) and reports what it records (Reported).
//
// Run is the only goroutine that changes MODELDIR, the chunk cache's pins and the records'
// versions; the read side (ActiveModels, ActiveNames, Reported) is safe for concurrent use.
package reconcile

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/driftline/driftline/agent/chunkcache"
	"github.com/driftline/driftline/agent/config"
	"github.com/driftline/driftline/agent/devicedb"
	"github.com/driftline/driftline/agent/modelstore"
	"github.com/driftline/driftline/agent/msgq"
	"github.com/driftline/driftline/shared/wire"
)

// Errors of a pull. A model's last_error wraps one of these with context.
var (
	// ErrStalled is returned by a pull that verified nothing for Fetch.Stall.
	ErrStalled = errors.New("agent: pull stalled")
	// ErrAttempts is returned by a pull when a digest was requested Fetch.Attempts times.
	ErrAttempts = errors.New("agent: too many attempts for one digest")
	// ErrRejected wraps a model version refused before download: manifest digest, signature,
	// manifest content or model name.
	ErrRejected = errors.New("agent: model version refused")
	// errPreempted ends a pull when a newer desired revision arrived.
	errPreempted = errors.New("agent: newer desired revision")
)

// Conn is what the reconciler needs of the device's MQTT connection.
type Conn interface {
	// DesiredSignal holds a value (1-slot) while a new desired payload waits. A receiver that
	// takes the signal without taking the payload puts it back (non-blocking send).
	DesiredSignal() chan struct{}
	// PeekDesired returns the waiting desired payload (nil: none) and leaves it; TakeDesired
	// returns and forgets it.
	PeekDesired() []byte
	TakeDesired() []byte
	// Frames queues the chunk topic's messages, in order.
	Frames() *msgq.Queue
	// Gen changes on every connect and every loss of the connection; Up reports it is up.
	Gen() uint64
	Up() bool
	// Send publishes without waiting for an acknowledgement (the fetch requests).
	Send(topic string, payload []byte, qos byte) error
	// SubscribeShared subscribes to model's shared chunk topic (issue 18) and returns the
	// subscription once the broker granted it, or nil (not connected, refused, no answer): the
	// pull then fetches on the device's own topic. UnsubscribeShared ends one (nil: none) and
	// drops its queued frames; SharedFrames queues that topic's messages meanwhile (nil: the
	// connection has no shared topic).
	SubscribeShared(ctx context.Context, model string) *SharedSub
	UnsubscribeShared(s *SharedSub)
	SharedFrames() *msgq.Queue
}

// SharedSub is a pull's granted subscription to its model's shared chunk topic.
type SharedSub struct {
	Model, Topic string
	// ID names the subscription in fetch requests (wire.FetchRequest.SharedSub).
	ID string
	// Gen is the connection generation it was made on: a new connection has lost it (clean
	// session).
	Gen uint64
}

// Trust is the device's root of trust: it verifies what the hub signs.
type Trust interface {
	// Desired decodes and verifies a desired payload (signature, expiry, revision against the
	// last acted on) and says whether to act on it; it counts and logs what it refuses.
	Desired(payload []byte) (wire.Desired, bool)
	// Preempts reports whether payload is a valid desired state above rev that Desired would
	// act on. It changes and counts nothing.
	Preempts(payload []byte, rev uint64) bool
	// Approval checks the approval signature of a model version (artifact.ErrUnsigned,
	// artifact.ErrUnknownKey, or another error for a bad signature).
	Approval(m wire.DesiredModel) error
	// Revoked reports whether the hub withdrew name@version.
	Revoked(name string, version int) bool
	// ActedOn records the revision acted on in full (replays below it are refused).
	ActedOn(rev uint64)
}

// Metrics are the agent's collectors the reconciler counts into (agent/metrics.go names them).
type Metrics struct {
	FetchedChunks prometheus.Counter
	ChunksReused  prometheus.Counter
	// Activations is labelled by result (ResultActive, ResultFailed, ResultRolledBack).
	Activations *prometheus.CounterVec
	// Rejected is labelled by reason (the Reason constants).
	Rejected *prometheus.CounterVec
	// PullStages, when set, observes the seconds from a desired state taken up to each stage a
	// new model version's pull reaches, labelled by stage (the Stage constants).
	PullStages prometheus.ObserverVec
}

// Stages of a pull, the values of the pull-stage metric's stage label: each observation is the
// time from the desired state taken up (Run's goroutine took it from the queue) to the stage.
const (
	// StageNotified: the model's state notified recorded (its record persisted).
	StageNotified = "notified"
	// StageManifest: the manifest fetched (or found) and verified.
	StageManifest = "manifest"
	// StageDownloading: the state downloading recorded (chunks pinned, the partial download
	// open and filled from what the device holds), before any wait for a listening slot.
	StageDownloading = "downloading"
	// StageListening: subscribed to the model's shared chunk topic (the broker's SUBACK),
	// after any wait for a listening slot (fleet mode).
	StageListening = "listening"
	// StageChunks: every chunk of the file verified and written.
	StageChunks = "chunks"
	// StageStaged: the file hashed whole and staged as a version directory.
	StageStaged = "staged"
	// StageAssets: the contract, profile and output reference here.
	StageAssets = "assets"
	// StageActive: the version activated (health check passed), state active or rolled_back.
	StageActive = "active"
)

// Stages lists the Stage constants in the order a pull reaches them.
var Stages = []string{StageNotified, StageManifest, StageDownloading, StageListening, StageChunks, StageStaged, StageAssets, StageActive}

// Config is what New needs. Every field but the callbacks, PullSlots and ListenBudget is
// required.
type Config struct {
	DeviceID string
	Topics   wire.Topics
	Fetch    config.Fetch
	Logger   *slog.Logger
	Metrics  Metrics

	Conn  Conn
	Trust Trust
	// Store is MODELDIR; Cache the chunk cache; Assets holds manifests, contracts, profiles
	// and output references by digest; Records the model records and the desired revision.
	Store   *modelstore.Store
	Cache   *chunkcache.Cache
	Assets  devicedb.Namespace
	Records devicedb.Namespace

	// PullSlots, when not nil, bounds the pulls that run at once (agent.Options.PullSlots).
	PullSlots chan struct{}
	// ListenBudget, when not nil, bounds the bytes the pulls sharing it may hold while they
	// listen on shared chunk topics (agent.Options.ListenBudget): a pull takes twice its
	// model's size (listenCharge) before it subscribes and gives it back when it leaves.
	ListenBudget *Budget
	// OnChunk, when set, is called after each fetched chunk is verified and stored.
	OnChunk func()
	// Failpoint, when set, is called at "manifest" (a manifest fetched and verified).
	Failpoint func(step string)
	// OnChange, when set, is called after the records changed (a state, progress, a revision
	// begun): the agent queues the reported state (Reported).
	OnChange func()
}

// Reconciler acts on desired states. New prepares it, Load reads its records, Run acts.
type Reconciler struct {
	cfg   Config
	log   *slog.Logger
	conn  Conn
	trust Trust
	store *modelstore.Store
	cache *chunkcache.Cache
	// assets and own are Config.Assets and Config.Records.
	assets devicedb.Namespace
	own    devicedb.Namespace
	m      Metrics
	fetch  *fetcher

	// mu guards the records in memory and is never held across a disk write (saveRecord);
	// saveMu orders the records' writes.
	mu           sync.Mutex
	saveMu       sync.Mutex
	flushMu      sync.Mutex // held across a flush (flushRecords)
	models       map[string]*modelRecord
	dirty        map[string]bool // records saveSoon left for FlushRecords (under mu)
	writeBehind  atomic.Bool     // SetWriteBehind
	reportRev    uint64
	lastProgress time.Time

	assetMu    sync.Mutex
	assetCache map[string][]byte // the active models' assets by digest (ActiveModels)
	// activeMemo is ActiveModels' last answer and the records it came from (under assetMu).
	activeMemo activeMemo

	// recordHeld, when set (tests only), is called with each model record's value before it
	// is written.
	recordHeld func(value []byte)

	lastRev  uint64        // Run only
	taken    time.Time     // Run only: when the desired state acted on was taken up
	retryMin time.Duration // first wait before a failed revision is tried again
}

// New returns a Reconciler over cfg's stores. It reads nothing yet (Load does).
func New(cfg Config) *Reconciler {
	rc := &Reconciler{
		cfg: cfg, log: cfg.Logger, conn: cfg.Conn, trust: cfg.Trust, store: cfg.Store, cache: cfg.Cache,
		assets: cfg.Assets, own: cfg.Records, m: cfg.Metrics, models: map[string]*modelRecord{}, assetCache: map[string][]byte{},
		dirty:    map[string]bool{},
		retryMin: cfg.Fetch.Retry.D(),
	}
	rc.fetch = newFetcher(cfg.Conn, cfg.Fetch, cfg.DeviceID, cfg.Topics, cfg.Logger, rc.reject)
	return rc
}

// Load reads the model records and the last revision acted on, then reconciles them with what
// recovery found in MODELDIR (recs, from modelstore.Recover): a rolled-back activation is
// recorded as failed, models on disk without a record are adopted, every record's links are
// read again, and pins no version needs are released.
func (rc *Reconciler) Load(recs []modelstore.Recovery) error {
	if err := rc.loadRecords(); err != nil {
		return err
	}
	for _, r := range recs {
		rc.log.Warn("model directory recovered", "model", r.Name, "action", r.Action, "current", r.Current, "err", r.Err)
		if r.Action == modelstore.ActionRolledBack {
			rc.m.Activations.WithLabelValues(ResultFailed).Inc()
			msg := "activation interrupted and rolled back"
			if r.Err != nil {
				msg = r.Err.Error()
			}
			rc.setState(r.Name, wire.StateFailed, func(rec *modelRecord) { rec.LastError = msg })
		}
	}
	if err := rc.adoptDisk(); err != nil {
		return err
	}
	rc.mu.Lock()
	names := make([]string, 0, len(rc.models))
	for n := range rc.models {
		names = append(names, n)
	}
	rc.reportRev = rc.lastRev
	rc.mu.Unlock()
	for _, n := range names {
		rc.refreshLinks(n)
		if modelstore.ValidName(n) == nil {
			rc.releasePins(n)
		}
	}
	return nil
}

// reject counts refused input and logs why.
func (rc *Reconciler) reject(reason, msg string, args ...any) {
	rc.m.Rejected.WithLabelValues(reason).Inc()
	rc.log.Warn(msg, append([]any{"reason", reason}, args...)...)
}

// failpoint calls Config.Failpoint at step.
func (rc *Reconciler) failpoint(step string) {
	if rc.cfg.Failpoint != nil {
		rc.cfg.Failpoint(step)
	}
}

// stage observes the time since the desired state acted on was taken up at stage (Run only).
func (rc *Reconciler) stage(name string) {
	if rc.m.PullStages != nil && !rc.taken.IsZero() {
		rc.m.PullStages.WithLabelValues(name).Observe(time.Since(rc.taken).Seconds())
	}
}

// changed tells the agent the records changed.
func (rc *Reconciler) changed() {
	if rc.cfg.OnChange != nil {
		rc.cfg.OnChange()
	}
}

// canceled reports whether err is a context's end.
func canceled(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// Activation results, the values of the activations metric's result label.
const (
	ResultActive     = "active"
	ResultFailed     = "failed"
	ResultRolledBack = "rolled_back"
)

// Rejection reasons the reconciler counts, values of the rejected metric's reason label.
const (
	ReasonUnknownModel   = "unknown_model"
	ReasonManifestDigest = "manifest_digest"
	ReasonBadManifest    = "bad_manifest"
	ReasonUnsigned       = "unsigned"
	ReasonUnknownKey     = "unknown_key"
	ReasonBadSignature   = "bad_signature"
	ReasonChunkDigest    = "chunk_digest"
	ReasonBadFrame       = "bad_frame"
	ReasonOversizedFrame = "oversized_frame"
	ReasonUnknownRequest = "unknown_request"
	// ReasonRevoked: a model version the hub withdrew (its revocation list) named again.
	ReasonRevoked = "revoked"
)
