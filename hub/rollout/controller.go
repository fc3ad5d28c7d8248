package rollout

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/driftline/driftline/hub/command"
	"github.com/driftline/driftline/hub/state"
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
)

// Config configures a Controller.
type Config struct {
	Store  Store
	Reader state.Reader
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
	mu        sync.Mutex
	lastGates map[string]time.Time
	wake      chan struct{}
}

// New returns a controller; Run drives it.
func New(cfg Config) *Controller {
	if cfg.Interval <= 0 {
		cfg.Interval = 500 * time.Millisecond
	}
	if cfg.GateRefresh <= 0 {
		cfg.GateRefresh = 5 * time.Second
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
	}
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(c.decisions, c.tick)
	}
	return c
}

// Wake asks for a pass now (after a new rollout or a resume).
func (c *Controller) Wake() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// Run passes over the running rollouts every interval while this node is the leader, until
// ctx ends. A pass reads every device of the started waves, so on a large fleet it takes long:
// the wait before the next pass is at least passBackoff times the last pass's duration, which
// keeps the controller to a bounded share of the leader's CPU (the telemetry, the broker and
// the chunks the devices are pulling need the rest) at the cost of slower decisions.
func (c *Controller) Run(ctx context.Context) {
	t := time.NewTimer(c.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-c.wake: // the Reset below discards the pending tick (Go 1.23 timers)
		}
		var took time.Duration
		if c.cfg.Store.IsLeader() {
			start := time.Now()
			if err := c.Pass(ctx); err != nil && ctx.Err() == nil {
				c.log.Warn("rollout controller pass", "err", err)
			}
			took = time.Since(start)
			c.tick.Observe(took.Seconds())
		}
		t.Reset(max(c.cfg.Interval, passBackoff*took))
	}
}

// passBackoff is how many times a pass's own duration the controller waits before the next
// one: at most a quarter of a core goes to passes.
const passBackoff = 4

// Pass makes one round of decisions for every running rollout.
func (c *Controller) Pass(ctx context.Context) error {
	cursor := ""
	var errs []error
	for {
		page, err := c.cfg.Reader.Rollouts(cursor, state.MaxLimit)
		if err != nil {
			return err
		}
		for _, r := range page.Items {
			if r.State != state.RolloutRunning {
				continue
			}
			if err := c.step(ctx, r); err != nil && !errors.Is(err, state.ErrConflict) {
				errs = append(errs, err)
			}
		}
		if page.NextCursor == nil {
			return errors.Join(errs...)
		}
		cursor = *page.NextCursor
	}
}

// observation is what the controller learned about a rollout's started waves.
type observation struct {
	updates []state.DeviceUpdate
	// started counts devices of started waves; failed those failed (timeouts included).
	started, failed int
	// waveSettled is true when every device of the current wave is active or failed;
	// waveActive counts the current wave's active devices.
	waveSettled bool
	waveActive  int
	// withEvidence counts active devices that reported at least one window on the new version;
	// drifted those whose windows showed dataset drift; active counts active devices.
	active, withEvidence, drifted int
	rows, invalid                 int64
	// predEvidence counts active devices that reported prediction drift on the new version,
	// predDrifted those with a drifted prediction window; labels and relativeSum add up the
	// joined labels and label-weighted relative performance.
	predEvidence, predDrifted int
	labels                    int64
	relativeSum               float64
}

func (c *Controller) observe(r state.Rollout) (observation, error) {
	var o observation
	now := c.cfg.Now().UnixMilli()
	devs, err := c.cfg.Reader.RolloutDevices(r.ID, 0)
	if err != nil {
		return o, err
	}
	o.waveSettled = true
	timeout := int64(r.DeviceTimeout) * 1000
	for _, rd := range devs {
		if rd.Wave == 0 || rd.Wave > r.Wave {
			continue
		}
		o.started++
		st, errText := rd.State, ""
		// A failed device is looked at again: one an operator fixed that now runs the version
		// counts as active (a timed-out device likewise, once it activates).
		if st != state.DevActive && st != state.DevRolledBack {
			if d, err := c.cfg.Reader.Device(rd.ID); err == nil {
				st, errText = deviceState(d, r, st)
			} else if errors.Is(err, state.ErrNotFound) {
				st, errText = state.DevFailed, "device removed"
			}
			if st == state.DevFailed && rd.State == state.DevFailed {
				errText = rd.Error
			}
			if st != state.DevActive && st != state.DevFailed && timeout > 0 && r.WaveStartedAt > 0 && now-r.WaveStartedAt > timeout && rd.Wave == r.Wave {
				st, errText = state.DevFailed, "timed out: no activation within device_timeout_seconds"
			}
			if st != rd.State {
				o.updates = append(o.updates, state.DeviceUpdate{ID: rd.ID, State: st, Error: errText})
			}
		}
		switch st {
		case state.DevFailed:
			o.failed++
		case state.DevActive:
			o.active++
			if e, err := c.cfg.Reader.RunsEdge(rd.ID, r.Model, r.Version); err == nil {
				windows, _ := e.Attr["windows"].(float64)
				driftWindows, _ := e.Attr["drift_windows"].(float64)
				rows, _ := e.Attr["rows"].(float64)
				inv, _ := e.Attr["invalid_rows"].(float64)
				if windows > 0 {
					o.withEvidence++
					if driftWindows > 0 {
						o.drifted++
					}
				}
				o.rows += int64(rows)
				o.invalid += int64(inv)
				pw, _ := e.Attr["prediction_windows"].(float64)
				pd, _ := e.Attr["prediction_drift_windows"].(float64)
				if pw > 0 {
					o.predEvidence++
					if pd > 0 {
						o.predDrifted++
					}
				}
				labels, _ := e.Attr["labels"].(float64)
				rel, _ := e.Attr["relative_sum"].(float64)
				o.labels += int64(labels)
				o.relativeSum += rel
			}
		}
		if rd.Wave == r.Wave && st != state.DevActive && st != state.DevFailed {
			o.waveSettled = false
		}
		if rd.Wave == r.Wave && st == state.DevActive {
			o.waveActive++
		}
	}
	return o, nil
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
	_, err = c.cfg.Store.Apply(ctx, env)
	if err == nil && t.Action != state.ActDevices && t.Action != state.ActGates {
		c.log.Info("rollout decision", "rollout", r.ID, "action", t.Action, "wave", r.Wave, "reason", t.Reason)
	}
	return err
}

// step makes the decisions one running rollout needs now, in order: record device progress,
// stop on a failed gate, settle the wave, start the next wave after the bake, complete.
func (c *Controller) step(ctx context.Context, r state.Rollout) error {
	if r.Wave == 0 {
		return c.propose(ctx, r, state.RolloutTransition{Action: state.ActStartWave, Reason: "rollout started"})
	}
	o, err := c.observe(r)
	if err != nil {
		return err
	}
	g, failed, reason := gates(r, o)
	if len(o.updates) > 0 {
		if err := c.propose(ctx, r, state.RolloutTransition{Action: state.ActDevices, Devices: o.updates, Gates: g}); err != nil {
			return err
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
			return c.propose(ctx, r, state.RolloutTransition{Action: state.ActStartWave, Reason: "previous wave baked with every gate passing", Gates: g})
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
