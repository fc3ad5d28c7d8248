package rollout

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/driftline/driftline/hub/command"
	"github.com/driftline/driftline/hub/state"
	"github.com/driftline/driftline/hub/store"
	"github.com/driftline/driftline/shared/clock"
)

// Store is what the controller needs from the replicated store.
type Store interface {
	// IsLeader reports whether this node leads: only the leader decides.
	IsLeader() bool
	// Apply proposes a command.
	Apply(ctx context.Context, env command.Envelope) (any, error)
}

// Metric names of the controller.
const (
	MetricDecisions       = "driftline_hub_rollout_decisions_total"
	MetricDecisionSeconds = "driftline_hub_rollout_tick_seconds"
	// MetricTrackerBuilds counts full reads of a rollout's started waves (the repair);
	// MetricDeviceLooks counts devices looked at (read) by passes and builds.
	MetricTrackerBuilds = "driftline_hub_rollout_tracker_builds_total"
	MetricDeviceLooks   = "driftline_hub_rollout_device_looks_total"
)

// Config configures a Controller.
type Config struct {
	Store  Store
	Reader state.Reader
	// Changes is the node's change feed: the controller keeps per-rollout totals from it, so a
	// pass reads only the devices whose status changed (tracker.go). Nil: every pass reads every
	// device of the started waves (the design before the feed; tools and old tests).
	Changes *store.Feed
	// Rebuild is how often a rollout's totals are read in full again, as a repair; default 1 min.
	Rebuild time.Duration
	// Interval between passes over the running rollouts; default 500 ms.
	Interval time.Duration
	// GateRefresh is how often unchanged-state gate values are written; default 5 s.
	GateRefresh time.Duration
	// Now is the clock (tests may replace it); default time.Now.
	Now        func() time.Time
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// Controller drives rollouts on the leader.
type Controller struct {
	cfg       Config
	log       *slog.Logger
	decisions *prometheus.CounterVec
	tick      prometheus.Histogram
	builds    prometheus.Counter
	looks     prometheus.Counter
	mu        sync.Mutex
	lastGates map[string]time.Time
	wake      chan struct{}
	sub       *store.Subscription // nil without Config.Changes
	// passMu serializes passes and the ingestion of changes; it guards trackers.
	passMu   sync.Mutex
	trackers map[string]*tracker
	// applyWait is the time the current pass's proposals waited for the store (Run's backoff
	// leaves it out: it is the FSM's work, not the controller's).
	applyWait atomic.Int64
}

// New returns a controller; Run drives it.
func New(cfg Config) *Controller {
	if cfg.Interval <= 0 {
		cfg.Interval = 500 * time.Millisecond
	}
	if cfg.GateRefresh <= 0 {
		cfg.GateRefresh = 5 * time.Second
	}
	if cfg.Rebuild <= 0 {
		cfg.Rebuild = time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = clock.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	c := &Controller{
		cfg: cfg, log: cfg.Logger, lastGates: map[string]time.Time{}, wake: make(chan struct{}, 1),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricDecisions,
			Help: "Rollout decisions proposed, by action."}, []string{"action"}),
		tick: prometheus.NewHistogram(prometheus.HistogramOpts{Name: MetricDecisionSeconds,
			Help: "Time of one controller pass over the running rollouts.", Buckets: prometheus.ExponentialBuckets(0.0005, 2.5, 12)}),
		builds: prometheus.NewCounter(prometheus.CounterOpts{Name: MetricTrackerBuilds,
			Help: "Full reads of a running rollout's started waves (first pass, repair, after a reset or an operator action)."}),
		looks: prometheus.NewCounter(prometheus.CounterOpts{Name: MetricDeviceLooks,
			Help: "Devices the controller read (their reported state and gate evidence)."}),
		trackers: map[string]*tracker{},
	}
	if cfg.Changes != nil {
		c.sub = cfg.Changes.Subscribe()
	}
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(c.decisions, c.tick, c.builds, c.looks)
	}
	return c
}

// drain ingests the changes queued since the last call; it reports whether one asks for a pass
// now. Called with passMu held.
func (c *Controller) drain() bool {
	if c.sub == nil {
		clear(c.trackers) // no feed: every pass reads everything
		return false
	}
	cs, err := c.sub.Take()
	if err != nil {
		return false
	}
	return c.ingest(cs)
}

// Wake asks for a pass now (after a new rollout or a resume).
func (c *Controller) Wake() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// Run passes over the running rollouts every interval while this node is the leader, until
// ctx ends, and ingests the change feed as it comes (a new or resumed rollout asks for a pass at
// once). A pass costs what changed since the last one; the wait before the next pass is still at
// least passBackoff times the last pass's own work (its duration less the time its proposals
// waited for the store to apply them), which bounds the controller's share of the
// leader's CPU when a repair reads a large rollout in full. On a follower the trackers are
// dropped, so a node that becomes the leader starts from a full read.
func (c *Controller) Run(ctx context.Context) {
	t := time.NewTimer(c.cfg.Interval)
	defer t.Stop()
	var ready <-chan struct{}
	if c.sub != nil {
		ready = c.sub.Ready()
		defer c.sub.Close()
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-c.wake: // the Reset below discards the pending tick (Go 1.23 timers)
		case <-ready:
			c.passMu.Lock()
			wake := c.drain()
			if !c.cfg.Store.IsLeader() {
				clear(c.trackers)
			}
			c.passMu.Unlock()
			if !wake {
				continue
			}
		}
		var took time.Duration
		if c.cfg.Store.IsLeader() {
			start := time.Now()
			c.applyWait.Store(0)
			if err := c.Pass(ctx); err != nil && ctx.Err() == nil {
				c.log.Warn("rollout controller pass", "err", err)
			}
			took = time.Since(start)
			c.tick.Observe(took.Seconds())
		} else {
			c.passMu.Lock()
			clear(c.trackers) // another node decides meanwhile: start from a full read if this one leads again
			c.passMu.Unlock()
		}
		t.Reset(c.backoff(took))
	}
}

// passBackoff is how many times a pass's own duration the controller waits before the next
// one: at most a quarter of a core goes to passes.
const passBackoff = 4

// backoff is the wait after a pass that took took: passBackoff times the pass's own work, which
// leaves out the time its proposals waited for the store to apply them. A 90,000-device wave
// start is ~20 s of FSM work (docs/benchmarks.md, run d); counted as the controller's, it put the
// next pass, and every device progress of the wave, 80 s later.
func (c *Controller) backoff(took time.Duration) time.Duration {
	return max(c.cfg.Interval, passBackoff*(took-time.Duration(c.applyWait.Load())))
}

// Pass makes one round of decisions for every running rollout, after ingesting the changes
// the feed queued since the last pass.
func (c *Controller) Pass(ctx context.Context) error {
	c.passMu.Lock()
	defer c.passMu.Unlock()
	c.drain()
	cursor := ""
	var errs []error
	running := map[string]bool{}
	for {
		page, err := c.cfg.Reader.Rollouts(cursor, state.MaxLimit)
		if err != nil {
			return err
		}
		for _, r := range page.Items {
			if r.State != state.RolloutRunning {
				continue
			}
			running[r.ID] = true
			if err := c.step(ctx, r); err != nil {
				delete(c.trackers, r.ID) // whatever it missed, the next pass reads in full
				if !errors.Is(err, state.ErrConflict) {
					errs = append(errs, err)
				}
			}
		}
		if page.NextCursor == nil {
			break
		}
		cursor = *page.NextCursor
	}
	for id := range c.trackers {
		if !running[id] {
			delete(c.trackers, id)
		}
	}
	return errors.Join(errs...)
}

// observation is what the controller learned about a rollout's started waves: the totals
// of its devices' contributions (tracker.go), the current wave's progress and the device
// updates to record.
type observation struct {
	updates []state.DeviceUpdate
	contribution
	// waveSettled is true when every device of the current wave is active or failed;
	// waveActive counts the current wave's active devices.
	waveSettled bool
	waveActive  int
}

// observe brings the rollout's tracker up to date (reading it in full when there is none yet or
// its repair is due) and returns what it knows.
func (c *Controller) observe(r state.Rollout) (*tracker, observation, error) {
	t := c.trackers[r.ID]
	if t != nil && c.cfg.Now().Sub(t.built) >= c.cfg.Rebuild {
		t = nil
	}
	if t == nil {
		var err error
		if t, err = c.build(r); err != nil {
			return nil, observation{}, err
		}
		t.timedOut = waveTimedOut(r, c.cfg.Now().UnixMilli())
		c.trackers[r.ID] = t
	} else if err := c.refresh(t, r); err != nil {
		return nil, observation{}, err
	}
	return t, t.observation(), nil
}

// deviceState reads where a device stands on the rollout's version from its reported state.
func deviceState(d state.Device, r state.Rollout, cur string) (string, string) {
	rm, ok := d.Reported.Models[r.Model]
	if !ok {
		return cur, ""
	}
	if rm.Active != nil && *rm.Active == r.Version && (rm.State == state.DevActive || rm.State == "") {
		return state.DevActive, ""
	}
	onTarget := rm.Target == r.Version || rm.Target == 0
	switch rm.State {
	case state.DevFailed:
		if onTarget {
			return state.DevFailed, rm.LastError
		}
	case state.DevDownloading, state.DevActivating, state.DevNotified:
		if onTarget {
			return rm.State, ""
		}
	case state.DevRolledBack:
		if onTarget {
			return state.DevFailed, "rolled back by the agent: " + rm.LastError
		}
	}
	return cur, ""
}

// gates computes each configured gate over the started waves.
func gates(r state.Rollout, o observation) (map[string]state.GateValue, bool, string) {
	out := map[string]state.GateValue{}
	failed, reason := false, ""
	check := func(name string, thr *float64, value float64, evidence int64) {
		if thr == nil {
			return
		}
		g := state.GateValue{Value: round(value), Threshold: *thr, Evidence: evidence}
		g.Failed = evidence > 0 && value > *thr
		if g.Failed && !failed {
			failed, reason = true, name+" exceeded"
		}
		out[name] = g
	}
	fr := 0.0
	if o.started > 0 {
		fr = float64(o.failed) / float64(o.started)
	}
	check(state.GateFailureRate, r.Gates.MaxFailureRate, fr, int64(o.started))
	ds := 0.0
	if o.withEvidence > 0 {
		ds = float64(o.drifted) / float64(o.withEvidence)
	}
	check(state.GateDriftShare, r.Gates.MaxDriftShare, ds, int64(o.withEvidence))
	ir := 0.0
	if o.rows > 0 {
		ir = float64(o.invalid) / float64(o.rows)
	}
	check(state.GateInvalidRate, r.Gates.MaxInvalidRate, ir, o.rows)
	ps := 0.0
	if o.predEvidence > 0 {
		ps = float64(o.predDrifted) / float64(o.predEvidence)
	}
	check(state.GatePredictionDriftShare, r.Gates.MaxPredictionDriftShare, ps, int64(o.predEvidence))
	if thr := r.Gates.MinPerformance; thr != nil {
		// A floor, not a ceiling: it fails below the threshold, and only once enough labels
		// joined for the value to mean something.
		rel := 0.0
		if o.labels > 0 {
			rel = o.relativeSum / float64(o.labels)
		}
		g := state.GateValue{Value: round(rel), Threshold: *thr, Evidence: o.labels}
		g.Failed = o.labels >= r.Gates.MinPerfLabels() && rel < *thr
		if g.Failed && !failed {
			failed, reason = true, state.GatePerformance+" not met"
		}
		out[state.GatePerformance] = g
	}
	return out, failed, reason
}

func round(v float64) float64 { return math.Round(v*1e6) / 1e6 }

// enoughEvidence reports whether the data gates can pass: every active device of the started
// waves reported at least one window on the new version (inputs for the input gates,
// predictions for max_prediction_drift_share), and min_performance has its minimum of joined
// labels. Until then the wave waits: no evidence, no promotion.
func enoughEvidence(r state.Rollout, o observation) bool {
	if r.Gates.MaxDriftShare == nil && r.Gates.MaxInvalidRate == nil && r.Gates.MaxPredictionDriftShare == nil && r.Gates.MinPerformance == nil {
		return true
	}
	if (r.Gates.MaxDriftShare != nil || r.Gates.MaxInvalidRate != nil) && o.withEvidence < o.active {
		return false
	}
	if r.Gates.MaxPredictionDriftShare != nil && o.predEvidence < o.active {
		return false
	}
	return r.Gates.MinPerformance == nil || o.labels >= r.Gates.MinPerfLabels()
}

func sameGates(a, b map[string]state.GateValue) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func (c *Controller) propose(ctx context.Context, r state.Rollout, t state.RolloutTransition) error {
	t.ID, t.FromState, t.FromWave = r.ID, r.State, r.Wave
	env, err := command.New(command.TypeRolloutTransition, "", 0, "rollout-controller", t)
	if err != nil {
		return err
	}
	c.decisions.WithLabelValues(t.Action).Inc()
	start := time.Now()
	_, err = c.cfg.Store.Apply(ctx, env)
	c.applyWait.Add(int64(time.Since(start)))
	if err == nil && t.Action != state.ActDevices && t.Action != state.ActGates {
		c.log.Info("rollout decision", "rollout", r.ID, "action", t.Action, "wave", r.Wave, "reason", t.Reason)
	}
	return err
}

// startWave proposes t, the start of r's next wave. The store proposes a wave start in parts of
// state.DefaultPartDevices devices (one Raft entry, one badger transaction per part), so a wave of
// any size starts; a part whose writes still do not fit one transaction (store.ErrCommandTooBig:
// devices with very large label sets) would be proposed again at every pass and never start: the
// rollout is paused instead, with a reason that says so. While a node of the cluster runs a
// build that does not know the parts (a rolling upgrade), the store proposes the wave start
// whole, as before parts (store.ErrNotSplit with ErrCommandTooBig): the pause then says to
// finish the upgrade and resume. When the first part is the one refused,
// nothing of the wave started (the others are refused with it). A later part refused alone (its
// devices' labels far larger than the first part's) leaves the wave started without them: they
// stay pending, count as timed out after device_timeout_seconds, and the pause is refused as a
// conflict (the wave moved).
func (c *Controller) startWave(ctx context.Context, r state.Rollout, t state.RolloutTransition) error {
	err := c.propose(ctx, r, t)
	if !errors.Is(err, store.ErrCommandTooBig) || r.Wave >= r.Waves() {
		return err
	}
	size := r.WaveSizes[r.Wave]
	if r.Wave > 0 {
		size -= r.WaveSizes[r.Wave-1]
	}
	c.log.Error("rollout wave too big to start; pausing", "rollout", r.ID, "wave", r.Wave+1, "devices", size, "err", err)
	if errors.Is(err, store.ErrNotSplit) {
		return c.propose(ctx, r, state.RolloutTransition{Action: state.ActPause, Gates: t.Gates,
			Reason: fmt.Sprintf("wave %d (%d devices) is too big to start in one replicated transaction while a hub node runs an older build (a rolling upgrade: waves start in parts of %d devices only once every node knows them): finish the upgrade, then resume", r.Wave+1, size, state.DefaultPartDevices)})
	}
	return c.propose(ctx, r, state.RolloutTransition{Action: state.ActPause, Gates: t.Gates,
		Reason: fmt.Sprintf("wave %d (%d devices) cannot start: the desired states of %d of its devices are too big for one replicated transaction (very large device labels?): abort, and roll out to devices with smaller labels", r.Wave+1, size, min(size, state.DefaultPartDevices))})
}

// step makes the decisions one running rollout needs now, in order: record device progress,
// stop on a failed gate, settle the wave, start the next wave after the bake, complete.
func (c *Controller) step(ctx context.Context, r state.Rollout) error {
	if r.Wave == 0 {
		return c.startWave(ctx, r, state.RolloutTransition{Action: state.ActStartWave, Reason: "rollout started"})
	}
	t, o, err := c.observe(r)
	if err != nil {
		return err
	}
	g, failed, reason := gates(r, o)
	if len(o.updates) > 0 {
		if err := c.propose(ctx, r, state.RolloutTransition{Action: state.ActDevices, Devices: o.updates, Gates: g}); err != nil {
			return err
		}
		for _, u := range o.updates {
			if d := t.devs[u.ID]; d != nil {
				d.recorded, d.recErr = u.State, u.Error
			}
			delete(t.pending, u.ID)
		}
		if r, err = c.cfg.Reader.Rollout(r.ID); err != nil {
			return err
		}
	}
	if failed {
		action := state.ActPause
		if r.OnGateFailure == "rollback" {
			action = state.ActRollback
		}
		return c.propose(ctx, r, state.RolloutTransition{Action: action, Reason: reason, Gates: g})
	}
	now := c.cfg.Now()
	if o.waveSettled && o.waveActive == 0 {
		// Whatever the gates: a wave in which no device runs the version never proceeds.
		return c.propose(ctx, r, state.RolloutTransition{Action: state.ActPause,
			Reason: fmt.Sprintf("every device of wave %d failed", r.Wave), Gates: g})
	}
	if r.WaveDoneAt == 0 {
		if o.waveSettled {
			return c.propose(ctx, r, state.RolloutTransition{Action: state.ActWaveDone, Gates: g})
		}
	} else if now.UnixMilli()-r.WaveDoneAt >= int64(r.BakeSeconds)*1000 && enoughEvidence(r, o) {
		if r.Wave < r.Waves() {
			return c.startWave(ctx, r, state.RolloutTransition{Action: state.ActStartWave, Reason: "previous wave baked with every gate passing", Gates: g})
		}
		return c.propose(ctx, r, state.RolloutTransition{Action: state.ActComplete, Reason: "last wave baked with every gate passing", Gates: g})
	}
	c.mu.Lock()
	stale := now.Sub(c.lastGates[r.ID]) >= c.cfg.GateRefresh
	c.mu.Unlock()
	if !sameGates(g, r.GateValues) && stale {
		c.mu.Lock()
		c.lastGates[r.ID] = now
		c.mu.Unlock()
		return c.propose(ctx, r, state.RolloutTransition{Action: state.ActGates, Gates: g})
	}
	return nil
}
