package agent

import (
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/procfs"

	"github.com/driftline/driftline/agent/reconcile"
)

// Metric names the agent exports on GET /metrics. The buffer's own (depth, bytes, dropped) are
// outbox.MetricDepth, outbox.MetricBytes and outbox.MetricDropped.
const (
	// MetricFetchedBytes counts chunk-frame bytes received for model pulls (what crossed the wire).
	MetricFetchedBytes = "driftline_agent_fetched_bytes_total"
	// MetricFetchedChunks counts chunks fetched, verified and stored.
	MetricFetchedChunks = "driftline_agent_chunks_fetched_total"
	// MetricChunksReused counts chunks a pull did not fetch because the device held them: in a
	// partial download it resumed, in another version's file on disk, or in the chunk cache.
	MetricChunksReused = "driftline_agent_chunks_reused_total"
	// MetricActivations counts activation attempts by result (ResultActive, ResultFailed,
	// ResultRolledBack).
	MetricActivations = "driftline_agent_activations_total"
	// MetricRejected counts refused input from outside, by reason (the Reason constants).
	MetricRejected = "driftline_agent_rejected_total"
	// MetricRSS is the process's resident memory.
	MetricRSS = "driftline_agent_rss_bytes"
	// MetricConnected is 1 while the MQTT connection is up.
	MetricConnected = "driftline_agent_connected"
	// MetricConnects counts MQTT connections made (first connect and reconnects).
	MetricConnects = "driftline_agent_connects_total"
	// MetricConnectRefused counts CONNECTs the broker refused, by reason (the Refused*
	// constants: bad_credentials, not_authorized, ...).
	MetricConnectRefused = "driftline_agent_connect_refused_total"
	// MetricConnectErrors counts connect attempts that reached no broker (network, TLS,
	// timeout).
	MetricConnectErrors = "driftline_agent_connect_errors_total"
	// MetricConnectBackoff is the wait before the next connect attempt, in seconds (0 while
	// connected).
	MetricConnectBackoff = "driftline_agent_connect_backoff_seconds"
	// MetricDesiredExpires is when the last valid desired state expires, Unix seconds (0: none).
	MetricDesiredExpires = "driftline_agent_desired_expires_timestamp_seconds"
	// MetricDesiredStale is 1 while the device has heard no valid desired state for longer than
	// the last one's expiry: the hub's feed is cut or frozen (the agent keeps running what it has).
	MetricDesiredStale = "driftline_agent_desired_stale"
	// MetricTrustRoot is the version of the root of trust the agent holds (0: trusted_keys).
	MetricTrustRoot = "driftline_agent_trust_root_version"
	// MetricTrustRootExpires is when that root expires, Unix seconds (0: trusted_keys).
	MetricTrustRootExpires = "driftline_agent_trust_root_expires_timestamp_seconds"
	// MetricTrustRootExpired is 1 while that root has expired: desired states are refused until
	// a renewed root arrives (the agent keeps running what it has).
	MetricTrustRootExpired = "driftline_agent_trust_root_expired"
	// MetricPullStages is a histogram of the seconds from a desired state taken up to each
	// stage a new model version's pull reaches, by stage (reconcile.Stages: notified, manifest,
	// downloading, listening, chunks, staged, assets, active): where a rollout's time goes on the device.
	MetricPullStages = "driftline_agent_pull_stage_seconds"
	// MetricInfo carries the agent's version as a label, value 1.
	MetricInfo = "driftline_agent_info"
)

// Activation results, the values of MetricActivations' result label.
const (
	ResultActive     = reconcile.ResultActive
	ResultFailed     = reconcile.ResultFailed
	ResultRolledBack = reconcile.ResultRolledBack
)

// Rejection reasons, the values of MetricRejected's reason label.
const (
	ReasonMalformedDesired = "malformed_desired"
	ReasonUnknownModel     = reconcile.ReasonUnknownModel
	ReasonManifestDigest   = reconcile.ReasonManifestDigest
	ReasonBadManifest      = reconcile.ReasonBadManifest
	ReasonUnsigned         = reconcile.ReasonUnsigned
	ReasonUnknownKey       = reconcile.ReasonUnknownKey
	ReasonBadSignature     = reconcile.ReasonBadSignature
	ReasonChunkDigest      = reconcile.ReasonChunkDigest
	ReasonBadFrame         = reconcile.ReasonBadFrame
	ReasonOversizedFrame   = reconcile.ReasonOversizedFrame
	ReasonUnknownRequest   = reconcile.ReasonUnknownRequest
	ReasonQueueFull        = "queue_full"
	ReasonForeignMessage   = "foreign_message"
	// ReasonLateSharedFrame: a frame of a model's shared chunk topic after the pull left it
	// (queued by the broker before the unsubscribe): expected, counted apart, not logged.
	ReasonLateSharedFrame = "late_shared_frame"
	// ReasonExpired: a signed desired state past its expiry (a replay, or a frozen feed).
	ReasonExpired = "expired"
	// ReasonReplayed: a signed desired state with a rev below the last acted on.
	ReasonReplayed = "replayed"
	// ReasonBadRoot: a root document that does not chain from the trusted root.
	ReasonBadRoot = "bad_root"
	// ReasonRootExpired: a desired state refused because the newest root of trust the agent
	// holds has expired (TUF refuses new metadata under an expired root).
	ReasonRootExpired = "root_expired"
	// ReasonRevoked: a model version the hub withdrew (its revocation list) named again.
	ReasonRevoked      = reconcile.ReasonRevoked
	ReasonMalformedAck = "malformed_ack"
)

var rejectReasons = []string{
	ReasonMalformedDesired, ReasonUnknownModel, ReasonManifestDigest, ReasonBadManifest, ReasonUnsigned,
	ReasonUnknownKey, ReasonBadSignature, ReasonChunkDigest, ReasonBadFrame, ReasonOversizedFrame,
	ReasonUnknownRequest, ReasonQueueFull, ReasonForeignMessage, ReasonLateSharedFrame, ReasonExpired, ReasonReplayed, ReasonBadRoot, ReasonRevoked,
	ReasonMalformedAck, ReasonRootExpired,
}

type metrics struct {
	fetchedBytes  prometheus.Counter
	fetchedChunks prometheus.Counter
	chunksReused  prometheus.Counter
	activations   *prometheus.CounterVec
	rejected      *prometheus.CounterVec
	connected     prometheus.Gauge
	connects      prometheus.Counter
	refused       *prometheus.CounterVec
	connectErrors prometheus.Counter
	backoff       prometheus.Gauge
}

// PullStageBuckets are MetricPullStages' buckets, in seconds: from a pull on a quiet device
// (well under a second) to a wave of thousands of fleet-mode agents (minutes).
var PullStageBuckets = []float64{0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 45, 60, 90, 120, 180, 240, 300, 480, 600}

// NewPullStages returns the MetricPullStages histogram, unregistered: an agent registers its
// own; fleet mode makes one for all its agents (Options.PullStages).
func NewPullStages() *prometheus.HistogramVec {
	return prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: MetricPullStages,
		Help:    "Seconds from a desired state taken up to each stage of a model version's pull (notified, manifest, downloading, listening, chunks, staged, assets, active).",
		Buckets: PullStageBuckets}, []string{"stage"})
}

func newMetrics(reg prometheus.Registerer, version string, rss bool) (*metrics, error) {
	m := &metrics{
		fetchedBytes: prometheus.NewCounter(prometheus.CounterOpts{Name: MetricFetchedBytes,
			Help: "Chunk-frame bytes received for model pulls."}),
		fetchedChunks: prometheus.NewCounter(prometheus.CounterOpts{Name: MetricFetchedChunks,
			Help: "Artifact chunks fetched, verified and stored."}),
		chunksReused: prometheus.NewCounter(prometheus.CounterOpts{Name: MetricChunksReused,
			Help: "Artifact chunks a pull did not fetch because the device held them (partial download, another version on disk, chunk cache)."}),
		activations: prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricActivations,
			Help: "Model activation attempts by result."}, []string{"result"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricRejected,
			Help: "Input refused by the agent (malformed, unverifiable or unexpected), by reason."}, []string{"reason"}),
		connected: prometheus.NewGauge(prometheus.GaugeOpts{Name: MetricConnected,
			Help: "1 while the MQTT connection is up."}),
		connects: prometheus.NewCounter(prometheus.CounterOpts{Name: MetricConnects,
			Help: "MQTT connections made, first connect and reconnects."}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricConnectRefused,
			Help: "MQTT CONNECTs the broker refused, by reason (bad_credentials, not_authorized, identifier_rejected, server_unavailable, protocol_version)."}, []string{"reason"}),
		connectErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: MetricConnectErrors,
			Help: "MQTT connect attempts that reached no broker (network, TLS, timeout)."}),
		backoff: prometheus.NewGauge(prometheus.GaugeOpts{Name: MetricConnectBackoff,
			Help: "Wait before the next MQTT connect attempt, in seconds; 0 while connected."}),
	}
	for _, r := range []string{ResultActive, ResultFailed, ResultRolledBack} {
		m.activations.WithLabelValues(r)
	}
	for _, r := range rejectReasons {
		m.rejected.WithLabelValues(r)
	}
	for _, r := range refusedReasons {
		m.refused.WithLabelValues(r)
	}
	cs := []prometheus.Collector{m.fetchedBytes, m.fetchedChunks, m.chunksReused, m.activations, m.rejected, m.connected, m.connects,
		m.refused, m.connectErrors, m.backoff,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: MetricInfo, Help: "Agent build information.",
			ConstLabels: prometheus.Labels{"version": version}}, func() float64 { return 1 }),
	}
	if rss {
		cs = append(cs, prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: MetricRSS,
			Help: "Resident memory of the agent process."}, func() float64 { return float64(processStats().RSS) }))
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register agent metrics: %w", err)
		}
	}
	return m, nil
}

// procStats is what the heartbeat reports about the process.
type procStats struct {
	// RSS is resident memory in bytes; CPUSeconds the user and system CPU time so far.
	RSS        int64
	CPUSeconds float64
}

var procCache struct {
	sync.Mutex
	at time.Time
	st procStats
}

// processStats reads /proc/self (zero values where /proc is unavailable), at most every 200 ms:
// in fleet mode every agent of the process reports the process's figures.
func processStats() procStats {
	procCache.Lock()
	defer procCache.Unlock()
	if time.Since(procCache.at) < 200*time.Millisecond {
		return procCache.st
	}
	procCache.at, procCache.st = time.Now(), readProcessStats()
	return procCache.st
}

func readProcessStats() procStats {
	p, err := procfs.Self()
	if err != nil {
		return procStats{}
	}
	st, err := p.Stat()
	if err != nil {
		return procStats{}
	}
	return procStats{RSS: int64(st.ResidentMemory()), CPUSeconds: st.CPUTime()}
}
