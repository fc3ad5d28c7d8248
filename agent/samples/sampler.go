// Package samples keeps a bounded, reservoir-sampled set of each window's valid rows on the
// device and, when the window drifts, sends it to the hub (PREFIX/dev/{id}/sample) as material
// for the next training run. Nothing leaves the device unless the contract in force allows
// collection (x-driftline.collect: true): without it rows are not even kept in memory. A
// per-device byte budget per UTC day bounds what is sent. A sample travels as a chunk-frame
// upload (Uploader: bounded frames through the agent's outbox, kept until the hub acknowledges
// the whole, digest-checked sample).
package samples

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/driftline/driftline/agent/devicedb"
	"github.com/driftline/driftline/agent/pipeline"
	"github.com/driftline/driftline/shared/contract"
	"github.com/driftline/driftline/shared/wire"
)

// Defaults.
const (
	// DefaultMaxRows is the reservoir's size: the most rows one sample carries.
	DefaultMaxRows = 200
	// DefaultMaxBytesPerDay is the per-device budget of sample bytes per UTC day.
	DefaultMaxBytesPerDay = 1 << 20
)

// Metric names of the sampler.
const (
	MetricSent    = "driftline_agent_samples_sent_total"
	MetricSkipped = "driftline_agent_samples_skipped_total"
)

// Options configure a Sampler.
type Options struct {
	DeviceID string
	Topics   wire.Topics
	Reporter pipeline.Reporter
	// State keeps the budget's use per day (required).
	State          devicedb.Namespace
	MaxRows        int
	MaxBytesPerDay int64
	Registerer     prometheus.Registerer
	Logger         *slog.Logger
	Now            func() time.Time
	// Seed seeds the reservoir's random choices (0: random).
	Seed uint64
	// Upload tunes the Uploader the Sampler sends through (its DeviceID, Topics, Reporter,
	// State, Registerer, Logger and Now are the Sampler's own).
	Upload UploadOptions
}

// Sampler is a pipeline.WindowSampler. Safe for concurrent use (the pipeline calls it under its
// own lock anyway).
type Sampler struct {
	opts Options
	log  *slog.Logger

	mu   sync.Mutex
	rng  *rand.Rand
	seen int64              // valid rows offered in this window
	kept [][]contract.Value // the reservoir
	// badSeen and bad are the reservoir of invalid rows (MaxRows/4 of them), as JSON objects.
	badSeen int64
	bad     [][]byte
	// predDrift says the model's predictions drifted since the last window closed: the next
	// input window is sampled as if it drifted (reason prediction_drift).
	predDrift bool

	sent, skipped *prometheus.CounterVec
	up            *Uploader
}

// New returns a Sampler.
func New(opts Options) (*Sampler, error) {
	if opts.Reporter == nil {
		return nil, errors.New("samples: Reporter is required")
	}
	if opts.Topics.Prefix() == "" {
		opts.Topics = wire.Default()
	}
	if opts.MaxRows <= 0 {
		opts.MaxRows = DefaultMaxRows
	}
	if opts.MaxBytesPerDay <= 0 {
		opts.MaxBytesPerDay = DefaultMaxBytesPerDay
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	seed := opts.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	s := &Sampler{opts: opts, log: opts.Logger, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
	s.sent = prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricSent, Help: "Samples of drifted windows sent, by reason."}, []string{"reason"})
	s.skipped = prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricSkipped,
		Help: "Drifted windows whose sample was not sent, by why (not_allowed, budget, empty)."}, []string{"why"})
	uo := opts.Upload
	uo.DeviceID, uo.Topics, uo.Reporter, uo.State, uo.Registerer, uo.Logger, uo.Now =
		opts.DeviceID, opts.Topics, opts.Reporter, opts.State.Sub("uploads"), opts.Registerer, opts.Logger, opts.Now
	up, err := NewUploader(uo)
	if err != nil {
		return nil, err
	}
	s.up = up
	if opts.Registerer != nil {
		for _, c := range []prometheus.Collector{s.sent, s.skipped} {
			if err := opts.Registerer.Register(c); err != nil {
				var are prometheus.AlreadyRegisteredError
				if !errors.As(err, &are) {
					return nil, err
				}
			}
		}
	}
	return s, nil
}

// Row offers one valid row of the open window (Algorithm R). Rows of a contract that does not
// allow collection are not kept.
func (s *Sampler) Row(sc *contract.Schema, values []contract.Value) {
	if sc == nil || !sc.Driftline.Collect {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seen++
	if len(s.kept) < s.opts.MaxRows {
		s.kept = append(s.kept, append([]contract.Value(nil), values...))
		return
	}
	if j := s.rng.Int64N(s.seen); j < int64(s.opts.MaxRows) {
		s.kept[j] = append(s.kept[j][:0], values...)
	}
}

// Invalid offers one invalid row of the open window, as read, to a separate reservoir of
// MaxRows/4 rows (at least one).
func (s *Sampler) Invalid(sc *contract.Schema, row *contract.RawRow) {
	if sc == nil || !sc.Driftline.Collect {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.badSeen++
	k := max(s.opts.MaxRows/4, 1)
	j := int64(len(s.bad))
	if len(s.bad) >= k {
		if j = s.rng.Int64N(s.badSeen); j >= int64(k) {
			return
		}
	}
	b, err := rawJSON(sc, row)
	if err != nil {
		return
	}
	if int(j) == len(s.bad) {
		s.bad = append(s.bad, b)
	} else {
		s.bad[j] = b
	}
}

// rawJSON renders an invalid row as read: each field's text (null when absent), the columns the
// contract does not name, or {"_row": text} for a row that could not be parsed.
func rawJSON(sc *contract.Schema, row *contract.RawRow) ([]byte, error) {
	if row.ParseErr != "" {
		return json.Marshal(map[string]string{"_row": string(row.Text)})
	}
	m := make(map[string]any, len(row.Cells)+len(row.Extra))
	for i, c := range row.Cells {
		if i >= len(sc.Fields) {
			break
		}
		switch c.Kind {
		case contract.RawAbsent, contract.RawNull:
			m[sc.Fields[i].Name] = nil
		case contract.RawComplex:
			m[sc.Fields[i].Name] = json.RawMessage(append([]byte(nil), c.Data...))
		default:
			m[sc.Fields[i].Name] = string(c.Data)
		}
	}
	for _, x := range row.Extra {
		m[string(x.Name)] = string(x.Value)
	}
	return json.Marshal(m)
}

// Close ends the window: when it drifted and its contract allows collection, the reservoir is
// sent within the day's budget; in every case the reservoir is emptied.
func (s *Sampler) Close(sc *contract.Schema, hdr wire.Header, win wire.Window, ref wire.ModelRef, drifted bool, reason string, invalid int64) {
	s.mu.Lock()
	kept, seen, bad := s.kept, s.seen, s.bad
	s.kept, s.seen, s.bad, s.badSeen = nil, 0, nil, 0
	if !drifted && s.predDrift {
		drifted, reason = true, "prediction_drift"
	}
	s.predDrift = false
	s.mu.Unlock()
	if !drifted || ref.Model == "" {
		return
	}
	if sc == nil || !sc.Driftline.Collect {
		s.skipped.WithLabelValues("not_allowed").Inc()
		return
	}
	if len(kept) == 0 && len(bad) == 0 {
		s.skipped.WithLabelValues("empty").Inc()
		return
	}
	rows := make([]json.RawMessage, 0, len(kept))
	for _, vs := range kept {
		b, err := rowJSON(sc, vs)
		if err != nil {
			s.log.Error("sample row not encodable", "err", err)
			continue
		}
		rows = append(rows, b)
	}
	msg := wire.Sample{Header: hdr, Window: win, ModelRef: ref, Reason: reason, WindowRows: seen, Rows: rows, Invalid: invalid}
	for _, b := range bad {
		msg.InvalidRows = append(msg.InvalidRows, b)
	}
	left, day, err := s.budgetLeft()
	if err != nil {
		s.log.Error("sample budget", "err", err)
		return
	}
	var payload []byte
	for len(msg.Rows)+len(msg.InvalidRows) > 0 {
		if payload, err = wire.Encode(msg); err != nil {
			s.log.Error("sample not encodable", "err", err)
			return
		}
		if int64(len(payload)) <= left && len(payload) <= wire.MaxSampleUpload {
			break
		}
		// The reservoirs are random: any prefix is a sample.
		msg.Rows = msg.Rows[:len(msg.Rows)*3/4]
		msg.InvalidRows = msg.InvalidRows[:len(msg.InvalidRows)*3/4]
		payload = nil
	}
	if payload == nil {
		s.skipped.WithLabelValues("budget").Inc()
		s.log.Info("drifted window not sampled: the day's sample budget is spent", "model", ref.Model, "window", win.Index)
		return
	}
	id, err := s.up.Upload(payload)
	if err != nil && id == "" {
		s.log.Error("sample not queued", "err", err)
		return
	}
	if err != nil { // stored: the resend queues it again
		s.log.Warn("sample upload not queued yet", "upload", id, "err", err)
	}
	if err := s.spend(day, int64(len(payload))); err != nil {
		s.log.Error("sample budget", "err", err)
	}
	s.sent.WithLabelValues(reason).Inc()
	s.log.Info("sampled a drifted window", "upload", id, "model", ref.Model, "version", ref.Version, "window", win.Index,
		"rows", len(msg.Rows), "of", seen, "invalid_rows", len(msg.InvalidRows), "bytes", len(payload))
}

// Uploader returns the uploader the sampler sends through: run it and hand it the device's
// sample acks (Attach does both).
func (s *Sampler) Uploader() *Uploader { return s.up }

// PredictionDrift tells the sampler that the model's predictions drifted (agent/outputs): the
// input window open now is sampled when it closes, even if its inputs do not drift.
func (s *Sampler) PredictionDrift() {
	s.mu.Lock()
	s.predDrift = true
	s.mu.Unlock()
}

// budgetLeft returns the bytes left today and today's key.
func (s *Sampler) budgetLeft() (int64, string, error) {
	day := "budget/" + s.opts.Now().UTC().Format("2006-01-02")
	used := int64(0)
	b, err := s.opts.State.Get([]byte(day))
	switch {
	case errors.Is(err, devicedb.ErrNotFound):
	case err != nil:
		return 0, day, err
	default:
		used, _ = strconv.ParseInt(string(b), 10, 64)
	}
	return s.opts.MaxBytesPerDay - used, day, nil
}

func (s *Sampler) spend(day string, n int64) error {
	left, _, err := s.budgetLeft()
	if err != nil {
		return err
	}
	return s.opts.State.Set([]byte(day), []byte(strconv.FormatInt(s.opts.MaxBytesPerDay-left+n, 10)))
}

// rowJSON renders a row as a JSON object keyed by field name, values as the contract reads
// them back: numbers, strings, booleans, times in RFC 3339, nulls.
func rowJSON(sc *contract.Schema, vs []contract.Value) ([]byte, error) {
	m := make(map[string]any, len(vs))
	for i, v := range vs {
		if i >= len(sc.Fields) {
			break
		}
		var x any
		switch v.Kind {
		case contract.KindNumber:
			x = v.Num
		case contract.KindString:
			x = v.Str
		case contract.KindBool:
			x = v.Bool
		case contract.KindTime:
			x = time.UnixMilli(int64(v.Num)).UTC().Format(time.RFC3339Nano)
		}
		m[sc.Fields[i].Name] = x
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("sample row: %w", err)
	}
	return b, nil
}
