// Package pipeline is the agent's DataOps half: it validates every incoming row against the
// data contract, sends invalid rows to the quarantine, profiles the valid ones per window and,
// when a window closes, reports validation counts, drift against the active model's reference
// profile, and the window's profile. Rows come from the MQTT data topic (IngestPayload), a
// watched directory (DirWatcher) and POST /ingest (Handler); `driftline-agent check` and
// `profile` (Check, Profile) run the same validation and profiling offline.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/driftline/driftline/agent/quarantine"
	"github.com/driftline/driftline/shared/contract"
	"github.com/driftline/driftline/shared/contract/rows"
	"github.com/driftline/driftline/shared/profile"
	"github.com/driftline/driftline/shared/wire"
	"github.com/prometheus/client_golang/prometheus"
)

// Sentinel errors of the package.
var (
	// ErrNoContract: no model is active and the agent config names no contract, so rows cannot
	// be checked (they are refused, not dropped: the caller sees this error).
	ErrNoContract = errors.New("pipeline: no data contract (no active model, none configured)")
	// ErrBadOptions wraps a missing or invalid Options field.
	ErrBadOptions = errors.New("pipeline: bad options")
	// ErrInput wraps a stream that could not be read to its end (I/O error, bad CSV header, a
	// CSV line over the limit). The rows before the failure were processed.
	ErrInput = errors.New("pipeline: unreadable input")
)

// Reporter sends one report towards the hub. The agent runtime implements it with the outbox
// (store and forward); Report must not block on the network. It is called with the pipeline's
// lock held, from whichever goroutine closed the window.
type Reporter interface {
	Report(kind wire.Kind, topic string, payload []byte) error
}

// ActiveModel says which model version the device runs. ok is false while none is active;
// contract is then ignored and the pipeline uses Options.Contract and reports no drift. profile
// is the encoded reference profile of the model's training data (empty: no drift). Active is
// called between streams, so it should be cheap (the runtime caches the bytes).
type ActiveModel interface {
	Active() (model string, version int, contract []byte, profile []byte, ok bool)
}

// DefaultMinDriftRows is Options.MinDriftRows when unset.
const DefaultMinDriftRows = 30

// Options configure a Pipeline.
type Options struct {
	// DeviceID is this device's id (required): the reports' device_id and topic level.
	DeviceID string
	// Topics builds report topics (default wire.Default()).
	Topics wire.Topics
	// Contract is the agent config's contract, used while no model is active (may be nil).
	Contract *contract.Schema
	// Window is the agent config's window; a zero part defers to the contract's
	// x-driftline.window, then to DefaultWindowRows / DefaultWindowSeconds.
	Window contract.Window
	// Reporter receives every report (required).
	Reporter Reporter
	// Model reports the active model (nil: never one).
	Model ActiveModel
	// Quarantine receives every invalid row (required).
	Quarantine *quarantine.Store
	// Registerer receives the Metric* collectors (nil: not registered).
	Registerer prometheus.Registerer
	// Logger (default slog.Default()).
	Logger *slog.Logger
	// Now is the clock (default time.Now); tests inject one to close windows by time.
	Now func() time.Time
	// MinDriftRows is the fewest valid rows a window needs to be scored for drift (default
	// DefaultMinDriftRows; negative: any). A window cut short (a model switch, a quiet device)
	// still reports validation and its profile; scoring a handful of rows against the
	// reference would flag drift on a steady device.
	MinDriftRows int
}

// quarantineBatch is how many invalid rows are buffered before they are written together.
const quarantineBatch = 256

// Pipeline validates, quarantines, profiles and reports. It is safe for concurrent use: rows
// of concurrent streams interleave into the same window.
type Pipeline struct {
	opts Options
	log  *slog.Logger
	m    *metrics
	// noSchemaLogged and noSchemaKey remember that the model version noSchemaKey brings no
	// contract, so it is logged once.
	noSchemaLogged bool
	noSchemaKey    string

	mu       sync.Mutex
	g        *generation // nil when there is no contract
	v        *contract.Validator
	out      []contract.Value
	viol     []contract.Violation
	w        window
	nextIdx  int64
	pending  []quarantine.Entry
	inflight int // streams being ingested; the generation changes only when 0
	seen     int64
	invalid  int64
	// kinds takes predictions and labels (nil: refused).
	kinds KindIngester
	// sampler sees valid rows and window verdicts (nil: none).
	sampler WindowSampler
}

// Stats are the pipeline's counters since New, for the agent's heartbeat.
type Stats struct {
	// RecordsSeen counts rows checked; RecordsInvalid those that broke a rule.
	RecordsSeen, RecordsInvalid int64
	// QuarantineDepth is the number of rows held in quarantine; QuarantineEvicted those
	// evicted for space since the store was created.
	QuarantineDepth, QuarantineEvicted int64
}

// Stats returns the counters. Safe for concurrent use.
func (p *Pipeline) Stats() Stats {
	p.mu.Lock()
	st := Stats{RecordsSeen: p.seen, RecordsInvalid: p.invalid}
	p.mu.Unlock()
	qs := p.opts.Quarantine.Stats()
	st.QuarantineDepth, st.QuarantineEvicted = int64(qs.Rows), int64(qs.Evicted)
	return st
}

// generation is what the active model (or the config) decides: contract, reference, window.
type generation struct {
	key     string // "model@version", or "" for the config's contract
	model   string
	version int
	schema  *contract.Schema
	cols    []profile.Column
	ref     *profile.Profile // nil: no drift
	drift   driftSetup
	window  ResolvedWindow
}

// New checks opts and returns a Pipeline; no window is open until the first row.
func New(opts Options) (*Pipeline, error) {
	if err := wire.ValidateName("device id", opts.DeviceID); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadOptions, err)
	}
	if opts.Reporter == nil || opts.Quarantine == nil {
		return nil, fmt.Errorf("%w: Reporter and Quarantine are required", ErrBadOptions)
	}
	if opts.Window.Rows < 0 || opts.Window.Seconds < 0 {
		return nil, fmt.Errorf("%w: negative window %+v", ErrBadOptions, opts.Window)
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
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	p := &Pipeline{opts: opts, log: opts.Logger, m: m, nextIdx: 1}
	p.mu.Lock()
	p.refreshLocked()
	p.mu.Unlock()
	return p, nil
}

// Ingest reads a stream of format f (rows.FormatCSV, FormatJSONL, FormatJSON, ...) to its end,
// checking every row; source names it in the quarantine ("file:NAME", "http"). The summary
// covers the rows read, also when the stream fails part-way (ErrInput).
func (p *Pipeline) Ingest(source string, f rows.Format, r io.Reader) (Summary, error) {
	return p.ingest(source, func(s *contract.Schema) (rows.Reader, error) { return rows.Open(r, f, s) })
}

// IngestPayload checks the rows of one MQTT data payload (a JSON object or an array of them).
func (p *Pipeline) IngestPayload(source string, payload []byte) (Summary, error) {
	return p.ingest(source, func(s *contract.Schema) (rows.Reader, error) { return rows.NewPayload(payload, s), nil })
}

// ingest runs one stream from its start.
func (p *Pipeline) ingest(source string, open func(*contract.Schema) (rows.Reader, error)) (Summary, error) {
	return p.ingestFrom(source, open, 0, nil)
}

// ingestFrom runs one stream. The first skip rows are read but not processed (a file resumed
// after a restart); progress, when not nil, is called after each processed row with its
// number, and an error from it ends the stream.
func (p *Pipeline) ingestFrom(source string, open func(*contract.Schema) (rows.Reader, error), skip int64, progress func(row int64) error) (Summary, error) {
	sum := newSummary()
	g, release := Pin(&p.mu, &p.inflight, p.refreshLocked, func() *generation { return p.g })
	if g == nil {
		return sum, ErrNoContract
	}
	defer release()
	rd, err := open(g.schema)
	if err != nil {
		return sum, fmt.Errorf("%w: %w", ErrInput, err)
	}
	err = ReadRows(rd, func(n int64, row *contract.RawRow) error {
		if n <= skip {
			return nil
		}
		p.mu.Lock()
		p.rowLocked(source, row, &sum)
		p.mu.Unlock()
		if progress != nil {
			return progress(n)
		}
		return nil
	})
	return sum, err
}

// Pin gives one ingest stream the current generation of its owner's state (the contract or
// reference a stream is checked against), which may change only while no stream is in flight.
// With mu held it refreshes the generation when inflight is 0 (refreshLocked), reads it
// (current) and, when there is one, counts the stream in inflight; release, to be called once
// when the stream ends, uncounts it. With no generation it returns nil and a nil release.
func Pin[G any](mu sync.Locker, inflight *int, refreshLocked func(), current func() *G) (g *G, release func()) {
	mu.Lock()
	defer mu.Unlock()
	if *inflight == 0 {
		refreshLocked()
	}
	if g = current(); g == nil {
		return nil, nil
	}
	*inflight++
	return g, func() {
		mu.Lock()
		*inflight--
		mu.Unlock()
	}
}

// ReadRows reads rd to its end, calling each with every row and its number, from 1; the row is
// reused by the next call. A read error ends it wrapped in ErrInput, naming how many rows were
// read before it; an error from each ends it as is. It returns nil at the end of the stream.
func ReadRows(rd rows.Reader, each func(n int64, row *contract.RawRow) error) error {
	var row contract.RawRow
	for n := int64(0); ; n++ {
		err := rd.Next(&row)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%w: after row %d: %w", ErrInput, n, err)
		}
		if err := each(n+1, &row); err != nil {
			return err
		}
	}
}

// rowLocked checks one row into the current window, closing windows as the bounds say.
func (p *Pipeline) rowLocked(source string, row *contract.RawRow, sum *Summary) {
	now := p.opts.Now()
	if p.w.rows > 0 && now.Sub(p.w.start) >= seconds(p.g.window.Seconds) {
		p.closeLocked(now)
	}
	if p.w.rows == 0 {
		p.w.start = now
	}
	var ok bool
	p.viol, ok = p.v.Validate(row, p.out, p.viol[:0])
	p.w.rows++
	p.seen++
	if ok {
		if err := p.w.prof.Add(p.out); err != nil {
			// Columns come from the same schema as the values: a bug, not bad input.
			p.log.Error("profile valid row", "source", source, "row", row.Num, "err", err)
		}
		p.w.valid++
		p.m.valid.Inc()
		if p.sampler != nil {
			p.sampler.Row(p.g.schema, p.out)
		}
		sum.add(nil)
	} else {
		p.w.invalid++
		p.invalid++
		p.m.invalid.Inc()
		if p.sampler != nil {
			p.sampler.Invalid(p.g.schema, row)
		}
		for _, v := range p.viol {
			countViolation(p.w.violations, v.Field, v.Rule)
		}
		sum.add(p.viol)
		p.pending = append(p.pending, quarantine.FromViolations(now, source, row.Num, p.viol))
		if len(p.pending) >= quarantineBatch {
			p.flushQuarantineLocked()
		}
	}
	if p.w.rows >= int64(p.g.window.Rows) {
		p.closeLocked(now)
	}
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// flushQuarantineLocked writes the buffered invalid rows. A failed write is logged with the
// number of rows it lost: the validation report still counts them.
func (p *Pipeline) flushQuarantineLocked() {
	if len(p.pending) == 0 {
		return
	}
	before := p.opts.Quarantine.Stats()
	if err := p.opts.Quarantine.Add(p.pending...); err != nil {
		p.log.Error("quarantine write failed; rows are counted in the validation report only",
			"rows", len(p.pending), "err", err)
	}
	after := p.opts.Quarantine.Stats()
	if after.Evicted > before.Evicted {
		p.m.evicted.Add(float64(after.Evicted - before.Evicted))
	}
	if after.Expired > before.Expired {
		p.m.expired.Add(float64(after.Expired - before.Expired))
	}
	clear(p.pending)
	p.pending = p.pending[:0]
}

// Tick closes the current window if its time is up, and picks up a change of active model
// when no stream is being read. Run calls it every second; tests call it with their clock.
func (p *Pipeline) Tick() {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.opts.Now()
	if p.g != nil && p.w.rows > 0 && now.Sub(p.w.start) >= seconds(p.g.window.Seconds) {
		p.closeLocked(now)
	}
	if p.inflight == 0 {
		p.refreshLocked()
	}
	p.expireLocked(now)
}

// expireLocked drops the quarantined rows older than the quarantine's age bound (and counts
// them); the quarantine's Add does the same, this covers an agent that stopped seeing bad rows.
func (p *Pipeline) expireLocked(now time.Time) {
	n, err := p.opts.Quarantine.Expire(now)
	if err != nil {
		p.log.Error("quarantine expiry failed", "err", err)
	}
	if n > 0 {
		p.m.expired.Add(float64(n))
	}
}

// Flush closes the current window now, if it holds rows, and writes the quarantine buffer.
func (p *Pipeline) Flush() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.w.rows > 0 {
		p.closeLocked(p.opts.Now())
	}
	p.flushQuarantineLocked()
}

// Run calls Tick every interval (1 s when 0) until ctx is done, then Flush, so a clean stop
// reports the last partial window.
func (p *Pipeline) Run(ctx context.Context, interval time.Duration) {
	RunTicks(ctx, interval, p.Tick, p.Flush)
}

// RunTicks calls tick every interval (1 s when 0 or less) until ctx is done, then flush: the
// loop that closes a window by time and reports the last partial one on a clean stop.
func RunTicks(ctx context.Context, interval time.Duration, tick, flush func()) {
	if interval <= 0 {
		interval = time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			flush()
			return
		case <-t.C:
			tick()
		}
	}
}

// Schema returns the contract rows are checked against now (nil when there is none).
func (p *Pipeline) Schema() *contract.Schema {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.g == nil {
		return nil
	}
	return p.g.schema
}
