// Package outputs watches a model's outputs on the device: the application hands the agent its
// predictions (one row per prediction, with an id) and, later, ground-truth labels for some of
// them (same ids, any delay, any order). Per window the Tracker reports the predictions' drift
// against the model version's output reference (shared/outputs, shipped with the version) and
// the performance of the predictions whose labels joined during the window. See DESIGN.md.
package outputs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/driftline/driftline/agent/devicedb"
	"github.com/driftline/driftline/agent/pipeline"
	"github.com/driftline/driftline/shared/contract"
	"github.com/driftline/driftline/shared/contract/rows"
	"github.com/driftline/driftline/shared/drift"
	"github.com/driftline/driftline/shared/outputs"
	"github.com/driftline/driftline/shared/profile"
	"github.com/driftline/driftline/shared/wire"
)

// Row kinds an application sends (the `kind` of POST /ingest and of a data-topic envelope).
const (
	KindInputs      = "inputs"
	KindPredictions = "predictions"
	KindLabels      = "labels"
)

// ErrNoReference means no active model version carries an output reference: predictions and
// labels are refused (503 on POST /ingest), not dropped.
var ErrNoReference = pipeline.ErrNoReference

// Model says which model version runs and its encoded output reference (ok false: none).
type Model interface {
	Output() (model string, version int, reference []byte, ok bool)
}

// Options configure a Tracker.
type Options struct {
	DeviceID string
	Topics   wire.Topics
	Reporter pipeline.Reporter
	Model    Model
	// State holds the join state.
	State devicedb.Namespace
	// Window is the agent config's window (zero parts defer to the output contract, then the
	// defaults), as for inputs.
	Window contract.Window
	Join   JoinOptions
	// MinDriftRows is the fewest valid predictions a window needs to be scored for drift
	// (default pipeline.DefaultMinDriftRows; negative: any).
	MinDriftRows int
	// OnPredictionDrift, when set, is called (with the tracker's lock held: it must not block)
	// when a window's predictions drifted; agent/samples then samples the open input window.
	OnPredictionDrift func()
	Registerer        prometheus.Registerer
	Logger            *slog.Logger
	Now               func() time.Time
}

// Tracker scores predictions and labels per window. Safe for concurrent use.
type Tracker struct {
	opts Options
	log  *slog.Logger
	join *Join
	m    *metrics

	mu         sync.Mutex
	g          *generation
	w          window
	nextIdx    int64
	inflight   int
	lastExpire time.Time
}

// generation is what the active model version's output reference decides.
type generation struct {
	key     string
	model   string
	version int
	ref     *outputs.Decoded
	drift   drift.Options
	driftOK bool
	window  pipeline.ResolvedWindow
	pred    rowSchema
	label   rowSchema
}

// rowSchema is one kind's contract with its validator and the positions of id and value.
type rowSchema struct {
	s     *contract.Schema
	v     *contract.Validator
	out   []contract.Value
	viol  []contract.Violation
	id    int
	value int
}

func newRowSchema(s *contract.Schema, id, value string) rowSchema {
	return rowSchema{s: s, v: contract.NewValidator(s, contract.Options{}), out: make([]contract.Value, len(s.Fields)),
		id: s.Index(id), value: s.Index(value)}
}

// window is the open window: predictions profiled, pairs joined, rows refused.
type window struct {
	start                   time.Time
	predictions, invalid    int64
	labels, invalidLabels   int64
	prof                    *profile.Profile
	acc                     *outputs.Accumulator
	firstPredAt, lastPredAt time.Time
}

func (w *window) empty() bool {
	return w.predictions == 0 && w.invalid == 0 && (w.acc == nil || w.acc.Len() == 0)
}

// New opens the join state and returns a Tracker; nothing is reported until rows arrive.
func New(opts Options) (*Tracker, error) {
	if err := wire.ValidateName("device id", opts.DeviceID); err != nil {
		return nil, fmt.Errorf("outputs: %w", err)
	}
	if opts.Reporter == nil || opts.Model == nil {
		return nil, errors.New("outputs: Reporter and Model are required")
	}
	if opts.Topics.Prefix() == "" {
		opts.Topics = wire.Default()
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	j, err := OpenJoin(opts.State, opts.Join)
	if err != nil {
		return nil, err
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	t := &Tracker{opts: opts, log: opts.Logger, join: j, m: m, nextIdx: 1}
	t.mu.Lock()
	t.refreshLocked()
	t.mu.Unlock()
	return t, nil
}

// Ingest reads a stream of predictions or labels (kind) of format f to its end.
func (t *Tracker) Ingest(kind, source string, f rows.Format, r io.Reader) (pipeline.Summary, error) {
	return t.ingest(kind, func(s *contract.Schema) (rows.Reader, error) { return rows.Open(r, f, s) })
}

// IngestPayload reads the rows of one data-topic payload (a JSON object or array).
func (t *Tracker) IngestPayload(kind, source string, payload []byte) (pipeline.Summary, error) {
	return t.ingest(kind, func(s *contract.Schema) (rows.Reader, error) { return rows.NewPayload(payload, s), nil })
}

func (t *Tracker) ingest(kind string, open func(*contract.Schema) (rows.Reader, error)) (pipeline.Summary, error) {
	sum := pipeline.NewSummary()
	if kind != KindPredictions && kind != KindLabels {
		return sum, fmt.Errorf("outputs: unknown row kind %q (predictions or labels)", kind)
	}
	g, release := pipeline.Pin(&t.mu, &t.inflight, t.refreshLocked, func() *generation { return t.g })
	if g == nil {
		return sum, ErrNoReference
	}
	defer release()
	rs := &g.pred
	if kind == KindLabels {
		rs = &g.label
	}
	rd, err := open(rs.s)
	if err != nil {
		return sum, fmt.Errorf("%w: %w", pipeline.ErrInput, err)
	}
	err = pipeline.ReadRows(rd, func(_ int64, row *contract.RawRow) error {
		t.mu.Lock()
		defer t.mu.Unlock()
		return t.rowLocked(kind, rs, row, &sum)
	})
	return sum, err
}

// rowLocked checks one prediction or label, joins it and closes windows as the bounds say.
func (t *Tracker) rowLocked(kind string, rs *rowSchema, row *contract.RawRow, sum *pipeline.Summary) error {
	now := t.opts.Now()
	if !t.w.empty() && now.Sub(t.w.start) >= seconds(t.g.window.Seconds) {
		t.closeLocked(now)
	}
	if t.w.empty() {
		t.w.start = now
	}
	var ok bool
	rs.viol, ok = rs.v.Validate(row, rs.out, rs.viol[:0])
	sum.Add(rs.viol)
	if !ok {
		if kind == KindPredictions {
			t.w.invalid++
		} else {
			t.w.invalidLabels++
		}
		t.m.rows.WithLabelValues(kind, "invalid").Inc()
		return nil
	}
	t.m.rows.WithLabelValues(kind, "valid").Inc()
	id := rs.out[rs.id]
	if id.IsNull() {
		return nil // a primary key is required: the validator refused it already
	}
	idText := outputs.ClassOf(id)
	var pair Pair
	var joined bool
	var err error
	if kind == KindPredictions {
		if perr := t.w.prof.Add(rs.out); perr != nil {
			t.log.Error("profile prediction", "err", perr)
		}
		t.w.predictions++
		if t.w.firstPredAt.IsZero() {
			t.w.firstPredAt = now
		}
		t.w.lastPredAt = now
		pair, joined, err = t.join.AddPrediction(idText, rs.out[rs.value], now)
	} else {
		t.w.labels++
		pair, joined, err = t.join.AddLabel(idText, rs.out[rs.value], now)
	}
	if err != nil {
		return fmt.Errorf("outputs: join %s: %w", idText, err)
	}
	if joined && t.w.acc.Add(pair.Prediction, pair.Label) {
		t.m.joined.Inc()
	}
	if t.w.predictions >= int64(t.g.window.Rows) {
		t.closeLocked(now)
	}
	return nil
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// refreshLocked picks up a change of active model version (only between streams).
func (t *Tracker) refreshLocked() {
	model, version, b, ok := t.opts.Model.Output()
	key := ""
	if ok {
		key = fmt.Sprintf("%s@%d", model, version)
	}
	if t.g != nil && t.g.key == key {
		return
	}
	if t.g == nil && key == "" {
		return
	}
	if t.g != nil && !t.w.empty() {
		t.closeLocked(t.opts.Now())
	}
	t.g = nil
	if !ok {
		return
	}
	ref, err := outputs.Decode(b)
	if err != nil {
		t.log.Error("active model's output reference refused; predictions are not tracked", "model", key, "err", err)
		return
	}
	c := ref.Contract
	g := &generation{key: key, model: model, version: version, ref: ref,
		window: pipeline.ResolveWindow(t.opts.Window, c.Schema),
		pred:   newRowSchema(c.PredictionSchema(), c.ID, c.Prediction),
		label:  newRowSchema(c.LabelSchema(), c.ID, c.Label)}
	if opts, ok, err := pipeline.DriftOptions(c.PredictionSchema(), ref.Profile); err != nil || !ok {
		t.log.Warn("output reference does not profile the prediction; no prediction drift", "model", key, "err", err)
	} else {
		g.drift, g.driftOK = opts, true
	}
	t.g = g
	t.w = t.newWindow()
	refValue, _ := ref.Performance.Value(c.Metric)
	t.log.Info("output contract in use", "model", key, "task", c.Task, "metric", c.Metric,
		"reference", refValue, "reference_labels", ref.Performance.Labels, "window_rows", g.window.Rows, "window_seconds", g.window.Seconds)
}

func (t *Tracker) newWindow() window {
	prof, err := profile.New(drift.Columns(t.g.pred.s))
	if err != nil {
		t.log.Error("prediction contract cannot be profiled", "err", err) // a bug: Parse checked it
	}
	return window{prof: prof, acc: outputs.NewAccumulator(t.g.ref.Contract.Task)}
}

// closeLocked reports the open window (prediction drift, performance) and starts the next.
func (t *Tracker) closeLocked(now time.Time) {
	w := t.w
	idx := t.nextIdx
	t.nextIdx++
	hdr, win := pipeline.ClosedWindow(t.opts.DeviceID, idx, w.start, now)
	ref := wire.ModelRef{Model: t.g.model, Version: t.g.version}
	c := t.g.ref.Contract
	if t.g.driftOK && w.predictions > 0 && w.predictions >= int64(t.minDriftRows()) {
		if rep, err := drift.Compare(t.g.ref.Profile, w.prof, t.g.drift); err != nil {
			t.log.Error("prediction drift failed", "model", t.g.key, "window", idx, "err", err)
		} else if fr, ok := rep.Features[c.Prediction]; ok && fr.Skipped == "" {
			d := wire.PredictionDrift{Header: hdr, Window: win, ModelRef: ref, Prediction: c.Prediction,
				Rows: w.predictions, Invalid: w.invalid, Method: string(fr.Method), Score: fr.Score,
				ScoreType: fr.ScoreType, Threshold: fr.Threshold, Calibrated: fr.Calibrated, PValue: fr.PValue}
			if fr.Drift {
				d.Drift = 1
				if t.opts.OnPredictionDrift != nil {
					t.opts.OnPredictionDrift()
				}
			}
			t.send(wire.KindPredictionDrift, t.opts.Topics.PredictionDrift(t.opts.DeviceID), d)
			t.m.drift.Set(float64(d.Drift))
		}
	}
	if t.g.driftOK && w.predictions > 0 {
		// The window's prediction profile, for the hub's fleet view (merged across devices and
		// scored against the output reference): sent even when this window alone is too small
		// to be scored, since many small windows add up to a fleet that can be.
		if err := t.opts.Reporter.Report(wire.KindPredictionProfile, t.opts.Topics.PredictionProfile(t.opts.DeviceID), w.prof.Encode()); err != nil {
			t.log.Error("report not queued", "kind", wire.KindPredictionProfile, "err", err)
		}
	}
	if w.acc.Len() > 0 {
		perf := w.acc.Result()
		value, _ := perf.Value(c.Metric)
		refValue, _ := t.g.ref.Performance.Value(c.Metric)
		js := t.join.Stats()
		p := wire.Performance{Header: hdr, Window: win, ModelRef: ref, Task: c.Task, Metric: c.Metric,
			Labels: perf.Labels, Value: value, Reference: refValue, Relative: outputs.Relative(c.Metric, value, refValue),
			Accuracy: perf.Accuracy, F1: perf.F1, MAE: perf.MAE, RMSE: perf.RMSE,
			PendingPredictions: js.PendingPredictions, PendingLabels: js.PendingLabels,
			Expired: js.ExpiredPredictions + js.ExpiredLabels, Duplicates: js.Duplicates}
		t.send(wire.KindPerformance, t.opts.Topics.Performance(t.opts.DeviceID), p)
		t.m.relative.Set(p.Relative)
	}
	t.w = t.newWindow()
	t.g.pred.v.Reset()
	t.g.label.v.Reset()
	t.m.windows.Inc()
}

func (t *Tracker) minDriftRows() int {
	switch {
	case t.opts.MinDriftRows < 0:
		return 0
	case t.opts.MinDriftRows == 0:
		return pipeline.DefaultMinDriftRows
	}
	return t.opts.MinDriftRows
}

func (t *Tracker) send(kind wire.Kind, topic string, pl wire.Payload) {
	b, err := wire.Encode(pl)
	if err != nil {
		t.log.Error("report not encodable", "kind", kind, "err", err)
		return
	}
	if err := t.opts.Reporter.Report(kind, topic, b); err != nil {
		t.log.Error("report not queued", "kind", kind, "err", err)
	}
}

// Tick closes the window when its time is up, picks up a model change between streams and
// expires old join entries.
func (t *Tracker) Tick() {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.opts.Now()
	if t.g != nil && !t.w.empty() && now.Sub(t.w.start) >= seconds(t.g.window.Seconds) {
		t.closeLocked(now)
	}
	if t.inflight == 0 {
		t.refreshLocked()
	}
	if now.Sub(t.lastExpire) >= expireEvery {
		t.lastExpire = now
		if err := t.join.Expire(now); err != nil {
			t.log.Error("join state expiry", "err", err)
		}
	}
}

// expireEvery is how often Tick expires old join entries.
const expireEvery = time.Minute

// Flush closes the open window now.
func (t *Tracker) Flush() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.g != nil && !t.w.empty() {
		t.closeLocked(t.opts.Now())
	}
}

// Run calls Tick every interval until ctx ends, then Flush.
func (t *Tracker) Run(ctx context.Context, interval time.Duration) {
	pipeline.RunTicks(ctx, interval, t.Tick, t.Flush)
}

// JoinStats returns the join's counters.
func (t *Tracker) JoinStats() JoinStats { return t.join.Stats() }
