// Package samples turns devices' samples of drifted windows into candidate dataset versions.
//
// A device sends PREFIX/dev/{id}/sample (agent/samples) when a window drifted and the contract
// of the model's training dataset allows collection. The Collector checks the sample against
// the hub's own view (the device runs that model version; the training dataset version's
// contract says x-driftline.collect), stages it in the replicated state, and, on the leader,
// gathers the staged samples of one training dataset version into a candidate version once the
// oldest has waited Settle (or MaxRows rows are staged): the rows are validated and profiled
// like a pushed sample, kept as content-addressed chunks, and registered as
// dataset:NAME@N derived_from the training version and collected_on each device. Registering it
// queues the io.driftline.dataset.candidate webhook event.
package samples

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/driftline/driftline/hub/command"
	"github.com/driftline/driftline/hub/state"
	"github.com/driftline/driftline/shared/artifact"
	"github.com/driftline/driftline/shared/contract"
	"github.com/driftline/driftline/shared/contract/rows"
	"github.com/driftline/driftline/shared/reference"
	"github.com/driftline/driftline/shared/wire"
	"github.com/driftline/driftline/shared/zstdx"
)

// Store is what the collector needs from the replicated store.
type Store interface {
	IsLeader() bool
	Apply(ctx context.Context, env command.Envelope) (any, error)
}

// Config configures a Collector.
type Config struct {
	Store  Store
	Reader state.Reader
	// Forward proposes a staging command from any node: the leader applies it, a follower
	// sends it to the leader (default Store.Apply, leader only).
	Forward func(ctx context.Context, env command.Envelope) error
	// LeaderOnly makes followers ignore samples (an external broker: every node hears every
	// device, and the leader stages each sample once).
	LeaderOnly bool
	// Settle is how long the oldest staged sample of a dataset version waits for others before
	// they become a candidate (default 30 s); MaxRows makes one at once (default 5,000).
	Settle  time.Duration
	MaxRows int
	// Every is the least time between two candidates of the same training dataset version
	// (default 10 min): a device that keeps drifting adds to the next candidate instead of
	// making one per Settle. MaxRows staged rows make one regardless.
	Every time.Duration
	// Queue bounds the samples waiting to be staged (default 256; beyond, new ones are dropped
	// and counted).
	Queue int
	// Publish sends a sample ack to a device (PREFIX/dev/{id}/sample_ack, QoS 1); nil: acks
	// are not sent (the devices send their uploads again until their outbox bounds drop them).
	Publish    func(topic string, payload []byte) error
	Topics     wire.Topics
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	Now        func() time.Time
}

// Metric names of the collector.
const (
	MetricSamples    = "driftline_hub_samples_total"
	MetricCandidates = "driftline_hub_candidates_total"
	MetricParts      = "driftline_hub_sample_parts_total"
)

// Collector stages samples and makes candidates.
type Collector struct {
	cfg        Config
	log        *slog.Logger
	queue      chan staged
	last       map[string]time.Time // training dataset version -> its last candidate (Run only)
	samples    *prometheus.CounterVec
	candidates prometheus.Counter
	parts      *prometheus.CounterVec

	upMu      sync.Mutex
	open      map[uploadKey]*openUpload
	openBytes int
	done      map[uploadKey]doneUpload
}

// staged is a sample waiting for Run: its JSON, and for a chunk-frame upload its id and
// digest (to acknowledge it). again is an ack to send once more instead (a repeated upload).
type staged struct {
	device  string
	payload []byte
	upload  string
	digest  string
	again   *wire.SampleAck
}

// New returns a Collector; Run starts it.
func New(cfg Config) *Collector {
	if cfg.Settle <= 0 {
		cfg.Settle = 30 * time.Second
	}
	if cfg.MaxRows <= 0 {
		cfg.MaxRows = 5000
	}
	if cfg.Every <= 0 {
		cfg.Every = 10 * time.Minute
	}
	if cfg.Queue <= 0 {
		cfg.Queue = 256
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Forward == nil {
		cfg.Forward = func(ctx context.Context, env command.Envelope) error { _, err := cfg.Store.Apply(ctx, env); return err }
	}
	if cfg.Topics.Prefix() == "" {
		cfg.Topics = wire.Default()
	}
	c := &Collector{cfg: cfg, log: cfg.Logger, queue: make(chan staged, cfg.Queue), last: map[string]time.Time{},
		open: map[uploadKey]*openUpload{}, done: map[uploadKey]doneUpload{},
		parts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricParts,
			Help: "Sample upload frames by result (ok, bad, digest, repeat, evicted)."}, []string{"result"}),
		samples: prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricSamples,
			Help: "Device samples by result (staged, refused, not_allowed, not_leader, dropped)."}, []string{"result"}),
		candidates: prometheus.NewCounter(prometheus.CounterOpts{Name: MetricCandidates, Help: "Candidate dataset versions registered."}),
	}
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(c.samples, c.candidates, c.parts)
	}
	return c
}

// Handle takes one sample message from the MQTT side. It never blocks (the broker's inline
// client calls it on the publisher's goroutine): the sample is queued for Run.
func (c *Collector) Handle(topic, device string, payload []byte) {
	select {
	case c.queue <- staged{device: device, payload: append([]byte(nil), payload...)}:
	default:
		c.samples.WithLabelValues("dropped").Inc()
		c.log.Warn("sample dropped: the staging queue is full", "device", device)
	}
}

// Run stages queued samples and, while this node leads, makes candidates, until ctx ends.
func (c *Collector) Run(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case s := <-c.queue:
			c.stage(ctx, s)
		case <-tick.C:
			if c.cfg.Store.IsLeader() {
				if err := c.Collect(ctx); err != nil {
					c.log.Warn("candidate dataset", "err", err)
				}
			}
		}
	}
}

// stage checks one sample against the hub's state and proposes it through Forward (a follower
// with the embedded broker sends it to the leader; with LeaderOnly a follower ignores it).
func (c *Collector) stage(ctx context.Context, s staged) {
	if s.again != nil {
		c.publishAck(*s.again)
		return
	}
	if c.cfg.LeaderOnly && !c.cfg.Store.IsLeader() {
		c.samples.WithLabelValues("not_leader").Inc()
		return
	}
	m, err := wire.DecodeSample(s.payload)
	if err == nil {
		err = m.MatchTopic(s.device)
	}
	if err != nil {
		c.samples.WithLabelValues("refused").Inc()
		c.log.Warn("bad sample", "device", s.device, "err", err)
		c.finished(s, wire.SampleRefused, err.Error())
		return
	}
	ds, dv, err := c.trainingData(m.Model, m.Version)
	if err != nil {
		c.samples.WithLabelValues("refused").Inc()
		c.log.Warn("sample refused", "device", s.device, "model", m.Model, "version", m.Version, "err", err)
		if errors.Is(err, state.ErrNotFound) || errors.Is(err, errNoTraining) { // else a read error: not acknowledged
			c.finished(s, wire.SampleRefused, err.Error())
		}
		return
	}
	sc, err := contract.Parse(dv.Contract)
	if err != nil || !sc.Driftline.Collect {
		c.samples.WithLabelValues("not_allowed").Inc()
		c.log.Warn("sample refused: the training dataset's contract does not allow collection", "device", s.device, "dataset", state.DatasetNode(ds, dv.Version))
		c.finished(s, wire.SampleRefused, "the training dataset's contract does not allow collection")
		return
	}
	env, err := command.New(command.TypeSampleStage, "", 0, "device:"+s.device, state.SampleStage{Sample: state.StagedSample{
		Device: s.device, Model: m.Model, ModelVersion: m.Version, Dataset: ds, DatasetVersion: dv.Version,
		WindowIndex: m.Index, WindowStart: m.WindowStart, WindowEnd: m.WindowEnd, Reason: m.Reason, WindowRows: m.WindowRows, Rows: m.Rows,
		InvalidRows: m.InvalidRows}})
	if err != nil {
		c.log.Error("encode sample", "err", err)
		return
	}
	if err := c.cfg.Forward(ctx, env); err != nil {
		// Not acknowledged: the device sends it again (no leader, a forward that failed).
		c.samples.WithLabelValues("refused").Inc()
		c.log.Warn("sample not staged", "device", s.device, "err", err)
		return
	}
	c.samples.WithLabelValues("staged").Inc()
	c.finished(s, wire.SampleStored, "")
}

// errNoTraining refuses a sample of a model version trained on no dataset.
var errNoTraining = errors.New("the model version names no training dataset")

// trainingData returns the dataset version model@version was trained on.
func (c *Collector) trainingData(model string, version int) (string, state.DatasetVersion, error) {
	mv, err := c.cfg.Reader.ModelVersion(model, version)
	if err != nil {
		return "", state.DatasetVersion{}, err
	}
	if len(mv.TrainedOn) == 0 {
		return "", state.DatasetVersion{}, errNoTraining
	}
	t := mv.TrainedOn[0]
	dv, err := c.cfg.Reader.DatasetVersion(t.Dataset, t.Version)
	return t.Dataset, dv, err
}

// Collect makes a candidate of every training dataset version whose staged samples settled (the
// oldest waited Settle, and the version's last candidate is at least Every old) or reached
// MaxRows. It is called from Run only (on the leader).
func (c *Collector) Collect(ctx context.Context) error {
	all, err := c.cfg.Reader.StagedSamples()
	if err != nil {
		return err
	}
	groups := map[string][]state.StagedSample{}
	var order []string
	for _, s := range all {
		k := state.DatasetNode(s.Dataset, s.DatasetVersion)
		if groups[k] == nil {
			order = append(order, k)
		}
		groups[k] = append(groups[k], s)
	}
	now := c.cfg.Now().UnixMilli()
	var errs []error
	for _, k := range order {
		g := groups[k]
		oldest, rows := g[0].StagedAt, 0
		for _, s := range g {
			oldest = min(oldest, s.StagedAt)
			rows += len(s.Rows)
		}
		settled := now-oldest >= c.cfg.Settle.Milliseconds() && c.cfg.Now().Sub(c.last[k]) >= c.cfg.Every
		if !settled && rows < c.cfg.MaxRows {
			continue
		}
		if err := c.candidate(ctx, g); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", k, err))
			continue
		}
		c.last[k] = c.cfg.Now()
	}
	return errors.Join(errs...)
}

// candidate registers one candidate version from a group of staged samples.
func (c *Collector) candidate(ctx context.Context, g []state.StagedSample) error {
	first := g[0]
	dv, err := c.cfg.Reader.DatasetVersion(first.Dataset, first.DatasetVersion)
	if err != nil {
		return err
	}
	sc, err := contract.Parse(dv.Contract)
	if err != nil {
		return fmt.Errorf("training contract: %w", err)
	}
	var buf, bad bytes.Buffer
	devices := map[string]bool{}
	keys := make([]string, 0, len(g))
	for _, s := range g {
		for _, r := range s.Rows {
			buf.Write(r)
			buf.WriteByte('\n')
		}
		for _, r := range s.InvalidRows {
			bad.Write(r)
			bad.WriteByte('\n')
		}
		devices[s.Device] = true
		keys = append(keys, s.Key)
	}
	res, err := reference.Build(sc, bytes.NewReader(buf.Bytes()), rows.FormatJSON, reference.Options{Calibrate: -1, AllowNoValidRows: true})
	if err != nil {
		return fmt.Errorf("profile the samples: %w", err)
	}
	// The rows travel into the store as content-addressed chunks, as a model's artifact does;
	// the sampled invalid rows likewise, apart.
	manifest, err := c.storeChunks(ctx, buf.Bytes())
	if err != nil {
		return fmt.Errorf("store the rows: %w", err)
	}
	var badManifest []byte
	if bad.Len() > 0 {
		if badManifest, err = c.storeChunks(ctx, bad.Bytes()); err != nil {
			return fmt.Errorf("store the invalid rows: %w", err)
		}
	}
	sum := sha256.Sum256(buf.Bytes())
	devs := make([]string, 0, len(devices))
	for d := range devices {
		devs = append(devs, d)
	}
	sort.Strings(devs)
	profile := res.Profile.Encode()
	psum := sha256.Sum256(profile)
	notes := append([]string{fmt.Sprintf("candidate: %d rows sampled from %d drifted windows on %d devices after drift on model:%s@%d",
		res.Rows, len(g), len(devs), first.Model, first.ModelVersion)}, res.Notes...)
	env, err := command.New(command.TypeCandidateCreate, "", 0, "hub:samples", state.CandidateCreate{
		Version: state.DatasetVersionCreate{Dataset: first.Dataset, Contract: dv.Contract, ContractHash: dv.ContractHash,
			Profile: profile, ProfileDigest: "sha256:" + hex.EncodeToString(psum[:]),
			SampleSHA256: "sha256:" + hex.EncodeToString(sum[:]), SampleBytes: int64(buf.Len()), SampleRows: res.Rows,
			InvalidRows: res.InvalidRows, SourceURI: fmt.Sprintf("%s%s@%d", state.CandidateSourcePrefix, first.Model, first.ModelVersion),
			Parents: []state.VersionRef{{Dataset: first.Dataset, Version: first.DatasetVersion}}, Notes: notes},
		Devices: devs, Staged: keys, Model: first.Model, ModelVersion: first.ModelVersion, Manifest: manifest, InvalidManifest: badManifest,
	})
	if err != nil {
		return err
	}
	out, err := c.cfg.Store.Apply(ctx, env)
	if err != nil {
		return err
	}
	if v, ok := out.(state.DatasetVersion); ok {
		c.candidates.Inc()
		c.log.Info("candidate dataset version registered", "dataset", state.DatasetNode(v.Dataset, v.Version),
			"rows", v.SampleRows, "devices", devs)
	}
	return nil
}

// storeChunks stores b as content-addressed zstd chunks and returns its canonical manifest.
func (c *Collector) storeChunks(ctx context.Context, b []byte) ([]byte, error) {
	var chunks []state.Chunk
	man, err := artifact.Split(bytes.NewReader(b), func(ch artifact.Chunk) error {
		chunks = append(chunks, state.Chunk{Digest: ch.Digest, Size: int64(len(ch.Data)), Zstd: zstdx.Encode(nil, ch.Data)})
		return nil
	})
	if err != nil {
		return nil, err
	}
	manifest, err := man.Canonical()
	if err != nil {
		return nil, err
	}
	if len(chunks) > 0 {
		put, err := command.New(command.TypeChunksPut, "", 0, "hub:samples", state.ChunksPut{Chunks: chunks})
		if err != nil {
			return nil, err
		}
		if _, err := c.cfg.Store.Apply(ctx, put); err != nil {
			return nil, err
		}
	}
	return manifest, nil
}
