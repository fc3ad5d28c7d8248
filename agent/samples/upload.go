package samples

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/driftline/driftline/agent/devicedb"
	"github.com/driftline/driftline/agent/pipeline"
	"github.com/driftline/driftline/shared/wire"
)

// Upload defaults.
const (
	// DefaultResendAfter is how long an upload waits for the hub's ack before it is sent again.
	DefaultResendAfter = 2 * time.Minute
	// DefaultMaxPending bounds the uploads kept waiting for an ack; the oldest is dropped (and
	// counted) to make room.
	DefaultMaxPending = 16
	// DefaultMaxAge drops an upload never acknowledged after this long.
	DefaultMaxAge = 7 * 24 * time.Hour
)

// Metric names of the uploader.
const (
	MetricUploads     = "driftline_agent_sample_uploads_total"
	MetricUploadParts = "driftline_agent_sample_upload_parts_total"
	MetricPending     = "driftline_agent_sample_uploads_pending"
)

// UploadOptions configure an Uploader.
type UploadOptions struct {
	DeviceID string
	Topics   wire.Topics
	// Reporter queues each frame in the agent's outbox (store and forward, in order).
	Reporter pipeline.Reporter
	// State keeps the uploads waiting for their ack (required): their frames and when they
	// were last sent.
	State       devicedb.Namespace
	ResendAfter time.Duration
	MaxPending  int
	MaxAge      time.Duration
	Registerer  prometheus.Registerer
	Logger      *slog.Logger
	Now         func() time.Time
}

// Uploader sends samples to the hub as chunk frames (wire.DataFrames, on PREFIX/dev/{id}/
// sample_part) and keeps each upload on disk until the hub's wire.SampleAck names it.
//
// Delivery: the frames go through the outbox, which keeps them across restarts and broker
// outages and sends them in order; a frame the broker acknowledged is not sent again, so an
// upload cut by a lost connection resumes with its next frame, and the hub completes it with
// the parts it already holds. Only the hub's ack ends an upload: without one after ResendAfter
// (the hub restarted and lost the parts, a broker dropped one) every frame is queued again;
// the hub ignores parts it has and answers an upload it stored already with the same ack. A
// refused upload (SampleRefused) is forgotten too.
type Uploader struct {
	opts UploadOptions
	log  *slog.Logger
	acks chan []byte
	// meta holds one record per pending upload (key: its id), parts its frames (key:
	// ID:NNNN), apart so listing the uploads reads no frame.
	meta, partsNS devicedb.Namespace

	mu sync.Mutex // one change of the pending set at a time
	// pend mirrors the records in meta (read once, by NewUploader): listing the uploads reads
	// no store, and Run waits for the next one due instead of listing them every few seconds.
	pend map[string]pendingUpload
	// kick tells Run the pending set changed (its next due time may be sooner).
	kick chan struct{}

	uploads *prometheus.CounterVec
	parts   prometheus.Counter
	pending prometheus.Gauge
}

// pendingUpload is the record of one upload waiting for its ack (key "m:ID").
type pendingUpload struct {
	Digest  string `json:"digest"`
	Parts   int    `json:"parts"`
	Created int64  `json:"created"`
	SentAt  int64  `json:"sent_at"`
}

// NewUploader returns an Uploader. Run it (for resends and acks) and give its HandleAck to the
// agent's sample_ack subscription.
func NewUploader(opts UploadOptions) (*Uploader, error) {
	if opts.Reporter == nil {
		return nil, errors.New("samples: uploader needs a Reporter")
	}
	if err := wire.ValidateName("device id", opts.DeviceID); err != nil {
		return nil, fmt.Errorf("samples: %w", err)
	}
	if opts.Topics.Prefix() == "" {
		opts.Topics = wire.Default()
	}
	if opts.ResendAfter <= 0 {
		opts.ResendAfter = DefaultResendAfter
	}
	if opts.MaxPending <= 0 {
		opts.MaxPending = DefaultMaxPending
	}
	if opts.MaxAge <= 0 {
		opts.MaxAge = DefaultMaxAge
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	u := &Uploader{opts: opts, log: opts.Logger, acks: make(chan []byte, 64), meta: opts.State.Sub("meta"), partsNS: opts.State.Sub("parts"),
		pend: map[string]pendingUpload{}, kick: make(chan struct{}, 1),
		uploads: prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricUploads,
			Help: "Sample uploads by outcome (started, resent, stored, refused, dropped)."}, []string{"outcome"}),
		parts:   prometheus.NewCounter(prometheus.CounterOpts{Name: MetricUploadParts, Help: "Sample upload frames queued (resends included)."}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{Name: MetricPending, Help: "Sample uploads waiting for the hub's ack."}),
	}
	if opts.Registerer != nil {
		for _, c := range []prometheus.Collector{u.uploads, u.parts, u.pending} {
			if err := opts.Registerer.Register(c); err != nil {
				var are prometheus.AlreadyRegisteredError
				if !errors.As(err, &are) {
					return nil, err
				}
			}
		}
	}
	if err := u.meta.Iterate(false, func(k, v []byte) error {
		var rec pendingUpload
		if json.Unmarshal(v, &rec) == nil {
			u.pend[string(k)] = rec
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("samples: read pending uploads: %w", err)
	}
	u.pending.Set(float64(len(u.pend)))
	return u, nil
}

// Upload stores payload (a wire.Sample's JSON, at most wire.MaxSampleUpload bytes) as a new
// upload and queues its frames. It returns the upload id.
func (u *Uploader) Upload(payload []byte) (string, error) {
	if len(payload) > wire.MaxSampleUpload {
		return "", fmt.Errorf("samples: upload of %d bytes, at most %d", len(payload), wire.MaxSampleUpload)
	}
	var rnd [8]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return "", err
	}
	id := "s-" + hex.EncodeToString(rnd[:])
	frames, err := wire.DataFrames(id, payload)
	if err != nil {
		return "", err
	}
	f, err := wire.DecodeFrame(frames[0])
	if err != nil {
		return "", err
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	ids := u.listLocked()
	for len(ids) >= u.opts.MaxPending {
		u.log.Warn("sample upload dropped unacknowledged: too many waiting", "upload", ids[0].id)
		u.forgetLocked(ids[0].id)
		u.uploads.WithLabelValues("dropped").Inc()
		ids = ids[1:]
	}
	// The parts first, then the record that names them: a crash in between leaves parts no
	// record names, which the next Run removes.
	for i, fr := range frames {
		if err := u.partsNS.Set(partKey(id, i), fr); err != nil {
			return "", fmt.Errorf("samples: store upload: %w", err)
		}
	}
	now := u.opts.Now().UnixMilli()
	rec := pendingUpload{Digest: f.DigestString(), Parts: len(frames), Created: now, SentAt: now}
	if err := u.putLocked(id, rec); err != nil {
		return "", err
	}
	u.uploads.WithLabelValues("started").Inc()
	u.pending.Set(float64(len(ids) + 1))
	select {
	case u.kick <- struct{}{}:
	default:
	}
	if err := u.sendLocked(id, rec); err != nil {
		return id, err
	}
	return id, nil
}

// HandleAck takes one PREFIX/dev/{id}/sample_ack payload. It never blocks (it runs on the MQTT
// client's goroutine): the ack is queued for Run; when the queue is full it is dropped and the
// upload is acknowledged again after its resend.
func (u *Uploader) HandleAck(payload []byte) {
	select {
	case u.acks <- append([]byte(nil), payload...):
	default:
	}
}

// Run applies acks and sends again the uploads not acknowledged for ResendAfter and drops
// those older than MaxAge, until ctx ends. It wakes when the next upload is due (at most tick
// later: a clock that jumps is caught up with), and not at all while nothing is pending.
func (u *Uploader) Run(ctx context.Context, tick time.Duration) {
	u.sweep(true)
	t := time.NewTimer(u.nextWait(tick))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case b := <-u.acks:
			u.ack(b)
		case <-u.kick:
		case <-t.C:
			u.sweep(false)
		}
		if !t.Stop() {
			select {
			case <-t.C:
			default:
			}
		}
		t.Reset(u.nextWait(tick))
	}
}

// nextWait returns how long Run may wait before an upload is due (at most tick; a day when none
// is pending: an Upload kicks it).
func (u *Uploader) nextWait(tick time.Duration) time.Duration {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.pend) == 0 {
		return 24 * time.Hour
	}
	now := u.opts.Now().UnixMilli()
	wait := tick
	for _, rec := range u.pend {
		due := min(rec.SentAt+u.opts.ResendAfter.Milliseconds(), rec.Created+u.opts.MaxAge.Milliseconds()+1)
		wait = min(wait, time.Duration(max(due-now, 0))*time.Millisecond)
	}
	// A resend whose record could not be written stays due: do not spin on it.
	return max(wait, 50*time.Millisecond)
}

// Pending returns the ids of the uploads waiting for an ack, oldest first.
func (u *Uploader) Pending() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	all := u.listLocked()
	ids := make([]string, len(all))
	for i, e := range all {
		ids[i] = e.id
	}
	return ids
}

func (u *Uploader) ack(b []byte) {
	a, err := wire.DecodeSampleAck(b)
	if err != nil || a.DeviceID != u.opts.DeviceID {
		u.log.Warn("bad sample ack", "err", err)
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	rec, ok := u.getLocked(a.UploadID)
	if !ok || rec.Digest != a.Digest {
		return // an old repeat, or not ours
	}
	u.forgetLocked(a.UploadID)
	u.uploads.WithLabelValues(a.Status).Inc()
	u.pending.Set(float64(len(u.listLocked())))
	if a.Status == wire.SampleRefused {
		u.log.Warn("the hub refused a sample", "upload", a.UploadID, "err", a.Error)
		return
	}
	u.log.Info("sample stored by the hub", "upload", a.UploadID, "parts", rec.Parts)
}

// sweep resends the uploads due (all of them when orphans is set: at start, after a restart,
// and removes parts no record names).
func (u *Uploader) sweep(start bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	now := u.opts.Now().UnixMilli()
	for _, e := range u.listLocked() {
		id, rec := e.id, e.rec
		switch {
		case now-rec.Created > u.opts.MaxAge.Milliseconds():
			u.log.Warn("sample upload dropped: never acknowledged", "upload", id)
			u.forgetLocked(id)
			u.uploads.WithLabelValues("dropped").Inc()
		case now-rec.SentAt >= u.opts.ResendAfter.Milliseconds():
			rec.SentAt = now
			if err := u.putLocked(id, rec); err != nil {
				u.log.Error("sample upload", "err", err)
				continue
			}
			u.uploads.WithLabelValues("resent").Inc()
			if err := u.sendLocked(id, rec); err != nil {
				u.log.Error("sample upload not queued", "upload", id, "err", err)
			}
		}
	}
	if start {
		u.dropOrphansLocked()
	}
	u.pending.Set(float64(len(u.listLocked())))
}

// sendLocked queues every frame of an upload in the outbox.
func (u *Uploader) sendLocked(id string, rec pendingUpload) error {
	topic := u.opts.Topics.SamplePart(u.opts.DeviceID)
	for i := 0; i < rec.Parts; i++ {
		fr, err := u.partsNS.Get(partKey(id, i))
		if err != nil {
			return fmt.Errorf("samples: read upload %s part %d: %w", id, i, err)
		}
		if err := u.opts.Reporter.Report(wire.KindSamplePart, topic, fr); err != nil {
			return err
		}
		u.parts.Inc()
	}
	return nil
}

func (u *Uploader) getLocked(id string) (pendingUpload, bool) {
	rec, ok := u.pend[id]
	return rec, ok
}

func (u *Uploader) putLocked(id string, rec pendingUpload) error {
	b, _ := json.Marshal(rec)
	if err := u.meta.Set([]byte(id), b); err != nil {
		return fmt.Errorf("samples: store upload: %w", err)
	}
	u.pend[id] = rec
	return nil
}

// pendingEntry is one pending upload as listLocked reads it.
type pendingEntry struct {
	id  string
	rec pendingUpload
}

// listLocked returns the pending uploads with their records, oldest first (from memory: pend
// mirrors the store).
func (u *Uploader) listLocked() []pendingEntry {
	all := make([]pendingEntry, 0, len(u.pend))
	for id, rec := range u.pend {
		all = append(all, pendingEntry{id, rec})
	}
	slices.SortFunc(all, func(a, b pendingEntry) int {
		return cmp.Or(cmp.Compare(a.rec.Created, b.rec.Created), strings.Compare(a.id, b.id))
	})
	return all
}

// forgetLocked deletes an upload's record and parts.
func (u *Uploader) forgetLocked(id string) {
	rec, _ := u.getLocked(id)
	delete(u.pend, id)
	_ = u.meta.Delete([]byte(id))
	for i := 0; i < rec.Parts; i++ {
		_ = u.partsNS.Delete(partKey(id, i))
	}
}

// dropOrphansLocked deletes parts whose upload has no record (a crash inside Upload).
func (u *Uploader) dropOrphansLocked() {
	var orphans [][]byte
	_ = u.partsNS.IterateKeys(false, func(k []byte, _ int64) error {
		id, _, _ := strings.Cut(string(k), ":")
		if _, ok := u.getLocked(id); !ok {
			orphans = append(orphans, append([]byte(nil), k...))
		}
		return nil
	})
	for _, k := range orphans {
		_ = u.partsNS.Delete(k)
	}
}

func partKey(id string, i int) []byte { return []byte(fmt.Sprintf("%s:%04d", id, i)) }
