package fleetdrift

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/driftline/driftline/hub/state"
	"github.com/driftline/driftline/shared/drift"
	"github.com/driftline/driftline/shared/profile"
	"github.com/driftline/driftline/shared/wire"
)

// Registry is what the service reads from the node's replicated state; state.Reader has it.
// Reads must be safe for concurrent use.
type Registry interface {
	// Device returns a device's record, state.ErrNotFound when the hub does not know it. Its
	// reported state names the active model versions.
	Device(id string) (state.Device, error)
	// Model returns a model (its latest version).
	Model(name string) (state.Model, error)
	// ModelVersion returns a model version (its trained_on list).
	ModelVersion(name string, v int) (state.ModelVersion, error)
	// DatasetVersion returns a dataset version with its contract and reference profile.
	DatasetVersion(name string, v int) (state.DatasetVersion, error)
	// Devices lists devices a page at a time (the API reads their drift health).
	Devices(sel state.Selector, cursor string, limit int) (state.Page[state.Device], error)
	// OutputReference returns a model version's encoded output reference (shared/outputs),
	// state.ErrNotFound when it has none. Only a Predictions service reads it.
	OutputReference(model string, version int) ([]byte, error)
}

// Config configures a Service. Zero durations and counts take the defaults in brackets.
type Config struct {
	Registry Registry
	// Predictions makes this the fleet view of the models' outputs: it takes the devices'
	// prediction profiles (PREFIX/dev/{id}/prediction_profile), compares them with each model
	// version's output reference instead of its training data's reference, publishes on
	// PREFIX/fleet/prediction_drift/{model}, and counts under the driftline_hub_prediction_drift_*
	// metrics. Everything else (windows, merging, bounds) is the same.
	Predictions bool
	// Publish sends one fleet drift message (PREFIX/fleet/drift/{model}, QoS 1, not retained).
	// May be nil: nothing is published.
	Publish func(topic string, payload []byte) error
	// ShouldPublish, when set, is asked before each publish: with an external broker shared by
	// every node, pass the store's IsLeader so the fleet hears one hub, not one per node.
	ShouldPublish func() bool
	Topics        wire.Topics
	// Window is the fleet window: profiles received in one window are merged and scored
	// together when it closes [1 minute]. Windows are aligned to the Unix epoch.
	Window time.Duration
	// FineRetention is how long window points are kept [1 hour].
	FineRetention time.Duration
	// CoarseStep is the span of a coarse point [1 hour]; CoarseRetention how long coarse
	// points are kept [7 days].
	CoarseStep, CoarseRetention time.Duration
	// MaxDevices bounds the devices whose drift is tracked [10,000]; beyond it the least
	// recently heard are forgotten. DeviceHistory is the points kept per device and model [60].
	MaxDevices, DeviceHistory int
	// MaxModels bounds the model versions tracked [64]; the least recently fed is forgotten.
	MaxModels int
	// Queue bounds profiles waiting for the worker [1,024]; Enqueue drops beyond it.
	Queue int
	// Now is the clock [time.Now]; tests pass their own.
	Now        func() time.Time
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// Service merges device profiles into fleet profiles and scores them. It is safe for
// concurrent use. All its state is in memory and bounded by Config (see DESIGN.md).
type Service struct {
	cfg   Config
	log   *slog.Logger
	m     *metrics
	queue chan observation

	mu      sync.Mutex
	refs    map[ModelKey]*refEntry
	fleets  map[ModelKey]*fleet
	devices map[string]*device
	counts  map[string]uint64
}

type observation struct {
	id      string
	payload []byte
}

// fleet is one model version's merged view.
type fleet struct {
	key       ModelKey
	ref       *reference
	win, step *bucket
	// last is the window closed last, kept for the current distribution until the next closes.
	last       *bucket
	fine       []Point
	coarse     []Point
	lastUpdate int64
}

// bucket is an open span: the merge of the profiles received in it.
type bucket struct {
	start, end int64
	prof       *profile.Profile
	profiles   int
	devices    map[string]struct{}
}

// device is one device's own drift per model version.
type device struct {
	lastSeen int64
	models   map[ModelKey]*deviceModel
}

type deviceModel struct {
	features []string
	latest   *drift.Report
	latestTS int64
	rows     uint64
	history  []DevicePoint
}

// Results counted per profile message (metric label and Stats key).
const (
	ResultOK          = "ok"
	ResultBad         = "bad"
	ResultUnknown     = "unknown_device"
	ResultUnmatched   = "unmatched"
	ResultUnmergeable = "unmergeable"
	ResultDropped     = "dropped"
)

// New returns a Service. Call Run to process queued profiles and close windows on time.
func New(cfg Config) (*Service, error) {
	if cfg.Registry == nil {
		return nil, errors.New("drift: a registry is required")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.Window, time.Minute)
	def(&cfg.FineRetention, time.Hour)
	def(&cfg.CoarseStep, time.Hour)
	def(&cfg.CoarseRetention, 7*24*time.Hour)
	defInt := func(n *int, v int) {
		if *n <= 0 {
			*n = v
		}
	}
	defInt(&cfg.MaxDevices, 10000)
	defInt(&cfg.DeviceHistory, 60)
	defInt(&cfg.MaxModels, 64)
	defInt(&cfg.Queue, 1024)
	if cfg.Topics == (wire.Topics{}) {
		cfg.Topics = wire.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Service{
		cfg: cfg, log: cfg.Logger, m: newMetrics(cfg.Registerer, cfg.Predictions), queue: make(chan observation, cfg.Queue),
		refs: map[ModelKey]*refEntry{}, fleets: map[ModelKey]*fleet{}, devices: map[string]*device{}, counts: map[string]uint64{},
	}, nil
}

// Enqueue hands a profile message to the worker without blocking (for transport handlers,
// which must return quickly). It copies payload. It reports false, and counts the message as
// dropped, when the queue is full.
func (s *Service) Enqueue(deviceID string, payload []byte) bool {
	select {
	case s.queue <- observation{id: deviceID, payload: bytes.Clone(payload)}:
		return true
	default:
		s.count(ResultDropped)
		return false
	}
}

// Run observes queued profiles and closes due windows every second until ctx ends.
func (s *Service) Run(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case o := <-s.queue:
			if err := s.Observe(o.id, o.payload); err != nil {
				s.log.Debug("device profile not used", "device", o.id, "err", err)
			}
		case <-tick.C:
			s.Flush()
		}
	}
}

// Stats returns how many profile messages ended with each result (ResultOK, ResultBad, ...).
func (s *Service) Stats() map[string]uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]uint64, len(s.counts))
	for k, v := range s.counts {
		out[k] = v
	}
	return out
}

func (s *Service) count(result string) {
	s.mu.Lock()
	s.counts[result]++
	s.mu.Unlock()
	s.m.profiles.WithLabelValues(result).Inc()
}

// Observe takes one device's window profile (the binary PREFIX/dev/{id}/profile payload). The
// profile is compared with the reference of every active model version of the device whose
// reference columns it has, recorded in the device's history and merged into that version's
// fleet window. Garbage is counted and answered with ErrBadProfile; a device the hub does not
// know with ErrUnknownDevice; a profile no active model's reference fits with ErrNoModel.
func (s *Service) Observe(deviceID string, payload []byte) error {
	p, err := profile.Decode(payload)
	if err != nil {
		s.count(ResultBad)
		return fmt.Errorf("%w: device %s: %v", ErrBadProfile, deviceID, err)
	}
	dev, err := s.cfg.Registry.Device(deviceID)
	if err != nil {
		if errors.Is(err, state.ErrNotFound) {
			s.count(ResultUnknown)
			return fmt.Errorf("%w: %s", ErrUnknownDevice, deviceID)
		}
		return fmt.Errorf("drift: read device %s: %w", deviceID, err)
	}
	now := s.cfg.Now().UnixMilli()
	var pubs []wire.FleetDrift
	matched := 0
	for _, name := range sortedKeys(dev.Reported.Models) {
		rm := dev.Reported.Models[name]
		if rm.Active == nil || *rm.Active <= 0 {
			continue
		}
		key := ModelKey{Model: name, Version: *rm.Active}
		ref, err := s.reference(key)
		if err != nil || !ref.fits(p) {
			continue
		}
		rep, err := drift.Compare(ref.prof, p, ref.opts)
		if err != nil {
			s.log.Debug("device profile not comparable", "device", deviceID, "model", key.String(), "err", err)
			continue
		}
		matched++
		s.mu.Lock()
		s.recordDevice(now, deviceID, key, ref, p, rep)
		pubs = append(pubs, s.recordFleet(now, deviceID, key, ref, p)...)
		s.mu.Unlock()
	}
	s.publish(pubs)
	if matched == 0 {
		s.count(ResultUnmatched)
		return fmt.Errorf("%w: device %s", ErrNoModel, deviceID)
	}
	s.count(ResultOK)
	return nil
}

// reference returns the cached reference of a model version, resolving it on a miss (outside
// the lock: it reads the database).
func (s *Service) reference(key ModelKey) (*reference, error) {
	now := s.cfg.Now()
	s.mu.Lock()
	e := s.refs[key]
	s.mu.Unlock()
	if e != nil && (e.err == nil || now.Sub(e.at) < refRetry) {
		return e.ref, e.err
	}
	resolve := resolveReference
	if s.cfg.Predictions {
		resolve = resolveOutputReference
	}
	ref, err := resolve(s.cfg.Registry, key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.refs) >= 4*s.cfg.MaxModels { // bounded: forget failures first, then everything
		for k, old := range s.refs {
			if old.err != nil {
				delete(s.refs, k)
			}
		}
		if len(s.refs) >= 4*s.cfg.MaxModels {
			clear(s.refs)
		}
	}
	s.refs[key] = &refEntry{ref: ref, err: err, at: now}
	return ref, err
}

// recordDevice keeps the device's latest report and compact history. Called with s.mu held.
func (s *Service) recordDevice(now int64, id string, key ModelKey, ref *reference, p *profile.Profile, rep *drift.Report) {
	d := s.devices[id]
	if d == nil {
		if len(s.devices) >= s.cfg.MaxDevices {
			s.evictDevices()
		}
		d = &device{models: map[ModelKey]*deviceModel{}}
		s.devices[id] = d
	}
	d.lastSeen = now
	dm := d.models[key]
	if dm == nil {
		dm = &deviceModel{features: sortedKeys(rep.Features)}
		d.models[key] = dm
		if len(d.models) > 8 { // a device runs few models; keep the 8 freshest
			var oldest ModelKey
			var at int64 = -1
			for k, m := range d.models {
				if at < 0 || m.latestTS < at {
					oldest, at = k, m.latestTS
				}
			}
			delete(d.models, oldest)
		}
	}
	dm.latest, dm.latestTS, dm.rows = rep, now, p.Rows()
	dm.history = append(dm.history, compactPoint(now, p.Rows(), rep, dm.features))
	if over := len(dm.history) - s.cfg.DeviceHistory; over > 0 {
		dm.history = append(dm.history[:0], dm.history[over:]...)
	}
	s.m.devices.Set(float64(len(s.devices)))
}

// Forget drops what the service keeps of a device (the hub removed it; the node calls it from the
// state machine's change feed), so its drift history does not outlive it.
func (s *Service) Forget(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.devices, id)
	s.m.devices.Set(float64(len(s.devices)))
}

// evictDevices forgets the least recently heard tenth of the tracked devices.
func (s *Service) evictDevices() {
	type seen struct {
		id string
		at int64
	}
	all := make([]seen, 0, len(s.devices))
	for id, d := range s.devices {
		all = append(all, seen{id, d.lastSeen})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].at < all[j].at || (all[i].at == all[j].at && all[i].id < all[j].id) })
	n := max(1, len(all)/10)
	for _, e := range all[:n] {
		delete(s.devices, e.id)
	}
	s.m.evicted.Add(float64(n))
}

// recordFleet merges p into the version's open window and coarse step, closing spans that are
// due first. Called with s.mu held; returns the messages to publish once it is released.
func (s *Service) recordFleet(now int64, id string, key ModelKey, ref *reference, p *profile.Profile) []wire.FleetDrift {
	f := s.fleets[key]
	if f == nil {
		if len(s.fleets) >= s.cfg.MaxModels {
			var oldest ModelKey
			var at int64 = -1
			for k, o := range s.fleets {
				if at < 0 || o.lastUpdate < at {
					oldest, at = k, o.lastUpdate
				}
			}
			delete(s.fleets, oldest)
		}
		f = &fleet{key: key, ref: ref}
		s.fleets[key] = f
	}
	pubs := s.closeDue(f, now)
	f.lastUpdate = now
	win, step := s.cfg.Window.Milliseconds(), s.cfg.CoarseStep.Milliseconds()
	if f.win == nil {
		start := now - mod(now, win)
		f.win = &bucket{start: start, end: start + win, devices: map[string]struct{}{}}
	}
	if f.step == nil {
		start := now - mod(now, step)
		f.step = &bucket{start: start, end: start + step, devices: map[string]struct{}{}}
	}
	for _, b := range []*bucket{f.win, f.step} {
		if b.prof == nil {
			b.prof = p.Clone()
		} else if err := b.prof.Merge(p); err != nil {
			s.counts[ResultUnmergeable]++
			s.m.profiles.WithLabelValues(ResultUnmergeable).Inc()
			continue
		}
		b.profiles++
		if len(b.devices) < s.cfg.MaxDevices {
			b.devices[id] = struct{}{}
		}
	}
	return pubs
}

func mod(a, b int64) int64 {
	m := a % b
	if m < 0 {
		m += b
	}
	return m
}

// Flush closes every span that is due at the clock's now, publishing one fleet drift message
// per closed window, and forgets model versions not fed for CoarseRetention. Run calls it every
// second; tests call it after moving their clock.
func (s *Service) Flush() {
	now := s.cfg.Now().UnixMilli()
	s.mu.Lock()
	var pubs []wire.FleetDrift
	for key, f := range s.fleets {
		pubs = append(pubs, s.closeDue(f, now)...)
		if now-f.lastUpdate > s.cfg.CoarseRetention.Milliseconds() {
			delete(s.fleets, key)
		}
	}
	s.mu.Unlock()
	s.publish(pubs)
}

// closeDue scores and files the spans of f that ended by now. Called with s.mu held.
func (s *Service) closeDue(f *fleet, now int64) []wire.FleetDrift {
	var pubs []wire.FleetDrift
	if f.win != nil && now >= f.win.end {
		pt := s.score(f, f.win, ResolutionWindow)
		f.fine = append(f.fine, pt)
		pubs = append(pubs, s.fleetMessage(f, f.win, pt))
		s.m.windows.Inc()
		f.last, f.win = f.win, nil
	}
	if f.step != nil && now >= f.step.end {
		f.coarse = append(f.coarse, s.score(f, f.step, ResolutionCoarse))
		f.step = nil
	}
	f.fine = trim(f.fine, now-s.cfg.FineRetention.Milliseconds())
	f.coarse = trim(f.coarse, now-s.cfg.CoarseRetention.Milliseconds())
	return pubs
}

// trim drops the points that ended by cut (points are in time order).
func trim(pts []Point, cut int64) []Point {
	i := 0
	for i < len(pts) && pts[i].End <= cut {
		i++
	}
	if i == 0 {
		return pts
	}
	return append(pts[:0], pts[i:]...)
}

// score compares a span's merged profile with the reference.
func (s *Service) score(f *fleet, b *bucket, resolution string) Point {
	pt := Point{Start: b.start, End: b.end, Resolution: resolution, Devices: len(b.devices), Profiles: b.profiles, Features: map[string]FeaturePoint{}}
	if b.prof == nil {
		return pt
	}
	pt.Rows = b.prof.Rows()
	rep, err := drift.Compare(f.ref.prof, b.prof, f.ref.opts)
	if err != nil {
		s.log.Warn("fleet profile not comparable", "model", f.key.String(), "err", err)
		return pt
	}
	pt.DatasetDrift, pt.DriftShare, pt.Features = rep.DatasetDrift, share(rep.DriftShare), featurePoints(rep)
	return pt
}

// fleetMessage builds the PREFIX/fleet/drift/{model} message of a closed window: the merged
// verdict and, per feature, how many of the window's devices drifted in their own latest
// window. Called with s.mu held.
func (s *Service) fleetMessage(f *fleet, b *bucket, pt Point) wire.FleetDrift {
	msg := wire.FleetDrift{TS: s.cfg.Now().UnixMilli(), Model: f.key.Model, Version: f.key.Version, Devices: int64(len(b.devices)),
		DriftShare: pt.DriftShare, Features: map[string]wire.FleetFeature{}}
	if pt.DatasetDrift {
		msg.DatasetDrift = 1
	}
	perFeature := map[string]int64{}
	for id := range b.devices {
		d := s.devices[id]
		if d == nil {
			continue
		}
		dm := d.models[f.key]
		if dm == nil || dm.latest == nil {
			continue
		}
		if dm.latest.DatasetDrift {
			msg.DriftingDevices++
		}
		for name, fr := range dm.latest.Features {
			if fr.Drift {
				perFeature[name]++
			}
		}
	}
	for name, fp := range pt.Features {
		// A skipped feature has no score; a field name that is not a valid topic-safe name
		// (the contract allows more) would make the whole message invalid: leave both out.
		if fp.Skipped != "" || wire.ValidateName("feature", name) != nil {
			continue
		}
		ff := wire.FleetFeature{Method: fp.Method, Score: fp.Score, ScoreType: fp.ScoreType, Threshold: fp.Threshold, Devices: min(perFeature[name], msg.Devices)}
		if fp.Drift {
			ff.Drift = 1
		}
		msg.Features[name] = ff
	}
	return msg
}

func (s *Service) publish(msgs []wire.FleetDrift) {
	if s.cfg.Publish == nil || len(msgs) == 0 {
		return
	}
	if s.cfg.ShouldPublish != nil && !s.cfg.ShouldPublish() {
		return
	}
	for _, m := range msgs {
		b, err := wire.Encode(m)
		if err != nil {
			s.log.Warn("fleet drift message not encodable", "model", m.Model, "err", err)
			continue
		}
		topic := s.cfg.Topics.FleetDrift(m.Model)
		if s.cfg.Predictions {
			topic = s.cfg.Topics.FleetPredictionDrift(m.Model)
		}
		if err := s.cfg.Publish(topic, b); err != nil {
			s.log.Warn("publish fleet drift", "model", m.Model, "err", err)
			continue
		}
		s.m.published.Inc()
	}
}
