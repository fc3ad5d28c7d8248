package pipeline

import (
	"fmt"
	"time"

	"github.com/driftline/driftline/shared/contract"
	"github.com/driftline/driftline/shared/drift"
	"github.com/driftline/driftline/shared/profile"
	"github.com/driftline/driftline/shared/wire"
)

// window is the state of the open window. start is when its first row arrived.
type window struct {
	start                time.Time
	rows, valid, invalid int64
	violations           map[string]map[string]int64
	prof                 *profile.Profile
}

// driftSetup says whether and how the generation scores drift.
type driftSetup struct {
	opts drift.Options
	ok   bool
}

// refreshLocked asks the ActiveModel which contract and reference apply and, when that changed,
// closes the open window under the old one and starts the new generation. It runs only while
// no stream is being read, so a stream's reader and the validator always share a schema.
func (p *Pipeline) refreshLocked() {
	var (
		model, key string
		version    int
		cb, pb     []byte
		active     bool
	)
	if p.opts.Model != nil {
		model, version, cb, pb, active = p.opts.Model.Active()
	}
	// Unchanged (the common case: asked for every stream and every second): nothing to build.
	if p.g != nil && (p.g.key != "") == active && (!active || p.g.model == model && p.g.version == version) {
		return
	}
	if active {
		key = fmt.Sprintf("%s@%d", model, version)
	}
	if p.g != nil && p.g.key == key {
		return
	}
	if p.g == nil && key == "" && p.opts.Contract == nil {
		return
	}
	g := &generation{key: key, model: model, version: version, schema: p.opts.Contract}
	if active && len(cb) > 0 {
		s, err := contract.Parse(cb)
		if err != nil {
			p.log.Error("active model's contract refused; using the configured contract", "model", key, "err", err)
		} else {
			g.schema = s
		}
	}
	if g.schema == nil {
		if !p.noSchemaLogged || p.noSchemaKey != key { // once per model version, not per tick
			p.log.Warn("no data contract: rows are refused until a model with one is active", "model", key)
			p.noSchemaLogged, p.noSchemaKey = true, key
		}
		if p.g != nil && p.w.rows > 0 {
			p.closeLocked(p.opts.Now())
		}
		p.g = nil
		return
	}
	g.cols = drift.Columns(g.schema)
	g.window = ResolveWindow(p.opts.Window, g.schema)
	if active && len(pb) > 0 {
		ref, err := profile.Decode(pb)
		if err != nil {
			p.log.Error("active model's reference profile refused; no drift", "model", key, "err", err)
		} else if opts, ok, err := DriftOptions(g.schema, ref); err != nil || !ok {
			p.log.Warn("reference profile shares no feature with the contract; no drift", "model", key, "err", err)
		} else {
			g.ref, g.drift = ref, driftSetup{opts: opts, ok: true}
		}
	}
	if p.g != nil && p.w.rows > 0 {
		p.closeLocked(p.opts.Now())
	}
	prof, err := profile.New(g.cols)
	if err != nil {
		// A parsed contract has at most as many fields as a profile takes; log and refuse.
		p.log.Error("contract cannot be profiled", "model", key, "err", err)
		p.g = nil
		return
	}
	p.g = g
	p.v = contract.NewValidator(g.schema, contract.Options{})
	p.out = make([]contract.Value, len(g.schema.Fields))
	p.w = window{violations: map[string]map[string]int64{}, prof: prof}
	p.m.setWindow(g.window)
	p.log.Info("data contract in use", "model", key, "fields", len(g.cols), "drift", g.drift.ok,
		"window_rows", g.window.Rows, "window_rows_source", g.window.RowsSource,
		"window_seconds", g.window.Seconds, "window_seconds_source", g.window.SecondsSource)
}

// ClosedWindow returns the header and window of report idx, for device, about a window that
// started at start and closes at now; a now before start (the clock stepped back) closes it at
// start, so the window's bounds stay ordered.
func ClosedWindow(device string, idx int64, start, now time.Time) (wire.Header, wire.Window) {
	if now.Before(start) {
		now = start
	}
	return wire.Header{DeviceID: device, TS: now.UnixMilli()},
		wire.Window{Index: idx, WindowStart: start.UnixMilli(), WindowEnd: now.UnixMilli()}
}

// closeLocked reports the open window and starts the next one.
func (p *Pipeline) closeLocked(now time.Time) {
	t0 := time.Now()
	p.flushQuarantineLocked()
	w := p.w
	idx := p.nextIdx
	p.nextIdx++
	hdr, win := ClosedWindow(p.opts.DeviceID, idx, w.start, now)
	ref := wire.ModelRef{Model: p.g.model, Version: p.g.version}
	qs := p.opts.Quarantine.Stats()
	val := wire.Validation{Header: hdr, Window: win, ModelRef: ref, Rows: w.rows, Valid: w.valid,
		Invalid: w.invalid, ValidShare: 1, Violations: wireViolations(w.violations),
		Quarantined: int64(qs.Rows), QuarantineEvicted: int64(qs.Evicted)}
	if w.rows > 0 {
		val.ValidShare = float64(w.valid) / float64(w.rows)
	}
	p.send(wire.KindValidation, p.opts.Topics.Validation(p.opts.DeviceID), val)
	p.report(wire.KindProfile, p.opts.Topics.Profile(p.opts.DeviceID), w.prof.Encode())
	drifted := false
	if p.g.drift.ok && w.valid > 0 && w.valid >= int64(p.minDriftRows()) {
		drifted = p.driftLocked(hdr, win, ref, w.prof)
	}
	if p.sampler != nil {
		p.sampler.Close(p.g.schema, hdr, win, ref, drifted, "input_drift", w.invalid)
	}
	prof, _ := profile.New(p.g.cols) // the same columns succeeded before
	p.w = window{violations: map[string]map[string]int64{}, prof: prof}
	p.v.Reset()
	p.m.windows.Inc()
	p.m.windowSeconds.Observe(time.Since(t0).Seconds())
}

// driftLocked scores the window against the reference, sends drift and drift/{feature}, and
// reports whether the window drifted.
func (p *Pipeline) driftLocked(hdr wire.Header, win wire.Window, ref wire.ModelRef, cur *profile.Profile) bool {
	rep, err := drift.Compare(p.g.ref, cur, p.g.drift.opts)
	if err != nil {
		p.log.Error("drift against the reference failed", "model", p.g.key, "window", win.Index, "err", err)
		return false
	}
	d := wire.Drift{Header: hdr, Window: win, ModelRef: ref, Rows: int64(cur.Rows()),
		DriftShare: rep.DriftShare, Features: rep.Scored, DriftedFeatures: rep.Drifted}
	if rep.DatasetDrift {
		d.DatasetDrift = 1
	}
	for _, name := range p.g.drift.opts.Only {
		fr, ok := rep.Features[name]
		if !ok || fr.Skipped != "" {
			continue
		}
		if err := wire.ValidateName("feature", name); err != nil {
			p.log.Warn("feature name cannot be a topic level; per-feature drift not sent", "feature", name)
			continue
		}
		if fr.Drift {
			d.Drifted = append(d.Drifted, name)
		}
		cc, _ := cur.Column(name)
		df := wire.DriftFeature{Header: hdr, Window: win, ModelRef: ref, Feature: name,
			Method: string(fr.Method), Score: fr.Score, Threshold: fr.Threshold,
			Calibrated: fr.Calibrated, Rows: int64(cc.Count()), PSI: fr.PSI, KS: fr.KS,
			Wasserstein: fr.Wasserstein}
		if fr.Drift {
			df.Drift = 1
		}
		df.ScoreType, df.PValue = fr.ScoreType, fr.PValue
		if fr.Method == drift.JensenShannon {
			score := fr.Score
			df.JensenShannon = &score
		}
		p.send(wire.KindDriftFeature, p.opts.Topics.DriftFeature(p.opts.DeviceID, name), df)
	}
	p.send(wire.KindDrift, p.opts.Topics.Drift(p.opts.DeviceID), d)
	p.m.driftShare.Set(rep.DriftShare)
	return rep.DatasetDrift
}

// send encodes a JSON report and hands it to the Reporter.
func (p *Pipeline) send(kind wire.Kind, topic string, pl wire.Payload) {
	b, err := wire.Encode(pl)
	if err != nil {
		p.log.Error("report not encodable", "kind", kind, "err", err)
		return
	}
	p.report(kind, topic, b)
}

func (p *Pipeline) report(kind wire.Kind, topic string, b []byte) {
	if err := p.opts.Reporter.Report(kind, topic, b); err != nil {
		p.log.Error("report not queued", "kind", kind, "topic", topic, "err", err)
	}
}

func (p *Pipeline) minDriftRows() int {
	switch {
	case p.opts.MinDriftRows < 0:
		return 0
	case p.opts.MinDriftRows == 0:
		return DefaultMinDriftRows
	}
	return p.opts.MinDriftRows
}
