package protocol

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/driftline/driftline/hub/command"
	"github.com/driftline/driftline/hub/state"
	"github.com/driftline/driftline/shared/wire"
)

// telemetry folds device messages into one pending observation per device and proposes them as
// one DeviceTelemetry command per interval: the Raft log grows with the interval, not with the
// message rate. A batch that cannot be applied (no leader) is merged back and retried.
//
// Presence. A `status` or `reported` message is retained: the broker replays the last one to the
// hub on every subscribe (a hub restart), however old it is. So neither is a sighting: each moves
// the device's last_seen only to its own `ts` (bounded by now), never to when the hub heard it.
// Live messages (heartbeats and window reports, never retained) are sightings: last_seen = now.
// A `status` online is a claim the next heartbeat must confirm: one whose `ts` is older than the
// presence window cannot set online (it is a replay), and after a `status` online dated before
// the service started (possibly a replay) the device has PresenceWindow to send a heartbeat (or
// any live message); if none came and the replicated state shows no sighting since (another node
// may have heard it: see below for the slack its coarse last_seen needs), the hub shows it
// offline. This covers the broker dying with the hub (a crash sends no Will): the retained
// `status` still says online, and the device may never come back.
//
// Heartbeats stay on the node that heard them (issue 18). A heartbeat moves the device's
// last-heard time in this node's memory (presence); it enters the batch, a replicated write,
// only when a reader of the replicated state needs it: the device is not online there (as this
// node knows it from the change feed: a transition, replicated at once), or the replicated
// last_seen is LastSeenInterval old or older (the coarse refresh), or the device has news in
// the batch anyway. At 100,000 devices heartbeating every 10 s that is 100,000 / 30 s writes a
// second instead of 10,000. So the replicated last_seen of a live device lags the last heartbeat
// by at most LastSeenInterval plus one heartbeat interval plus a batch; the node answering the
// API merges its own last-heard time (LastHeard). Status, reported and window reports are
// replicated as before.
type telemetry struct {
	s       *Service
	mu      sync.Mutex
	pending map[string]*state.DeviceObservation
	// unconfirmed holds the devices whose `status` said online and that have sent nothing live
	// since: by when they must, and the last_seen that status gave.
	unconfirmed map[string]claim
	// presence is what this node knows of each device's presence: what it heard itself, and
	// the replicated online and last_seen (from the change feed, or its own proposals since).
	presence map[string]*presence
	// started is when this service started (Unix ms). A `status` online dated before it may be a
	// replay of a record the broker kept across a crash, so it must be confirmed; one dated after
	// it is a live connect, which the device's Will or clean stop will end, so a device with a
	// heartbeat interval longer than the window does not flap offline after each reconnect.
	started int64
	// clock returns now, Unix ms (time.Now; a benchmark's simulated clock).
	clock func() int64
}

// claim is an online `status` waiting for a live message: by when (Unix ms), and the last_seen
// the status itself set (its own ts), which is no sighting.
type claim struct {
	by, seen int64
}

// presence is one device's presence as one node knows it (Unix ms).
type presence struct {
	// heard is when this node last received a live message of the device; 0: never.
	heard int64
	// shared is the replicated last_seen: the latest the change feed reported or this node
	// proposed since.
	shared int64
	// online is the replicated online flag as last reported (or proposed); known says it is
	// known at all (false after a reset of the feed: a snapshot restore, the service's start).
	online, known bool
}

// DefaultPresenceWindow is Config.PresenceWindow's default: three heartbeats at the SPEC's 10 s.
const DefaultPresenceWindow = 30 * time.Second

// maxPendingReports bounds one device's numbered reports waiting for a batch (while no leader
// applies them); more are left unacknowledged, and the agent sends them again.
const maxPendingReports = 4096

func newTelemetry(s *Service) *telemetry {
	return &telemetry{s: s, pending: map[string]*state.DeviceObservation{}, unconfirmed: map[string]claim{},
		presence: map[string]*presence{}, started: time.Now().UnixMilli(), clock: func() int64 { return time.Now().UnixMilli() }}
}

func (t *telemetry) obs(id string) *state.DeviceObservation {
	o := t.pending[id]
	if o == nil {
		o = &state.DeviceObservation{ID: id}
		t.pending[id] = o
	}
	return o
}

// presenceOf returns device id's presence, made when there is none. Called with t.mu held.
func (t *telemetry) presenceOf(id string) *presence {
	p := t.presence[id]
	if p == nil {
		p = &presence{}
		t.presence[id] = p
	}
	return p
}

// observe decodes one message and folds it in. It reports false for a payload it refused.
func (t *telemetry) observe(kind wire.Kind, id string, payload []byte) bool {
	now := t.clock()
	if len(payload) == 0 && (kind == wire.KindStatus || kind == wire.KindReported) {
		return true // a cleared retained message
	}
	var apply func(o *state.DeviceObservation)
	var err error
	seen, isClaim := now, false // when the message shows the device was there; a status online
	switch kind {
	case wire.KindStatus:
		var st wire.Status
		if st, err = wire.DecodeStatus(payload); err == nil {
			err = st.MatchTopic(id)
		}
		seen, isClaim = min(st.TS, now), st.Online && st.TS < t.started
		// An online status older than the window is a replayed record, not news of presence.
		online := st.Online
		apply = func(o *state.DeviceObservation) {
			if !online || now-seen <= t.s.cfg.PresenceWindow.Milliseconds() {
				o.Online = &online
			}
		}
	case wire.KindReported:
		var r wire.Reported
		if r, err = wire.DecodeReported(payload); err == nil {
			err = r.MatchTopic(id)
		}
		seen = min(r.TS, now)
		rep := toStateReported(r)
		apply = func(o *state.DeviceObservation) { o.Reported = &rep }
	case wire.KindHeartbeat:
		apply, err = decodeHeartbeat(id, payload)
	default:
		apply, err = decodeReport(kind, id, payload)
	}
	if err != nil {
		t.s.log.Warn("bad device message", "device", id, "kind", kind.String(), "err", err)
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	live := kind != wire.KindStatus && kind != wire.KindReported
	p := t.presenceOf(id)
	if live {
		p.heard = max(p.heard, now)
	}
	switch {
	case isClaim:
		t.unconfirmed[id] = claim{by: now + t.s.cfg.PresenceWindow.Milliseconds(), seen: seen}
	case kind != wire.KindReported:
		delete(t.unconfirmed, id) // a status offline, or a live message: the claim is settled
	}
	if kind == wire.KindHeartbeat && t.pending[id] == nil && p.known && p.online && now-p.shared < t.s.cfg.LastSeenInterval.Milliseconds() {
		t.s.m.hbLocal.Inc()
		return true // the replicated state shows the device online, seen recently enough
	}
	if kind == wire.KindHeartbeat {
		t.s.m.hbReplicated.Inc()
	}
	o := t.obs(id)
	o.LastSeen = max(o.LastSeen, seen)
	apply(o)
	if live || kind == wire.KindStatus {
		// What the replicated state will say once the batch applies (the change feed corrects it
		// if another node's command commits after).
		p.shared = max(p.shared, o.LastSeen)
		if o.Online != nil {
			p.online, p.known = *o.Online, true
		}
	}
	return true
}

// replicated takes in a device's presence as a committed command left it (a ChangeStatus of the
// change feed, in commit order, from any node).
func (t *telemetry) replicated(id string, online bool, lastSeen int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.presenceOf(id)
	p.shared = max(p.shared, lastSeen)
	p.online, p.known = online, true
}

// forget drops what this node knows of a removed device.
func (t *telemetry) forget(id string) {
	t.mu.Lock()
	delete(t.presence, id)
	t.mu.Unlock()
}

// reset forgets the replicated presence of every device (a snapshot restore may have changed
// it; not the feed's first reset, the subscription's start, which is before any message): each
// device's next heartbeat is replicated, and the feed teaches the rest.
func (t *telemetry) reset() {
	t.mu.Lock()
	for _, p := range t.presence {
		p.known, p.shared = false, 0
	}
	t.mu.Unlock()
}

// lastHeard returns when this node last received a live message of device id (Unix ms; 0:
// never since it started).
func (t *telemetry) lastHeard(id string) int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	if p := t.presence[id]; p != nil {
		return p.heard
	}
	return 0
}

// expire marks offline, in the pending batch, each device whose online `status` no live message
// confirmed within the presence window, unless the replicated state shows it seen since (through
// another node) or offline already. A sighting through another node reaches the replicated
// last_seen only every LastSeenInterval (heartbeats stay on the node that heard them), so one
// counts while it is younger than the window plus that interval: the claim is then checked
// again when it will not be.
func (t *telemetry) expire(now int64) {
	t.mu.Lock()
	due := map[string]claim{}
	for id, c := range t.unconfirmed {
		if c.by <= now {
			due[id] = c
			delete(t.unconfirmed, id)
		}
	}
	t.mu.Unlock()
	window := t.s.cfg.PresenceWindow.Milliseconds()
	slack := t.s.cfg.LastSeenInterval.Milliseconds()
	for id, c := range due {
		d, err := t.s.cfg.Reader.DeviceStatus(id)
		if err != nil {
			continue // deleted, or unreadable: nothing to correct
		}
		t.mu.Lock()
		o := t.pending[id]
		online, last := d.Online, d.LastSeen // as the state will read once the pending batch applies
		if o != nil {
			if o.Online != nil {
				online = *o.Online
			}
			last = max(last, o.LastSeen)
		}
		// A new status meanwhile runs its own window.
		if _, reclaimed := t.unconfirmed[id]; !reclaimed && online {
			switch {
			case last > c.seen && now-last < window+slack:
				// Seen since its status, through another node, recently enough.
				t.unconfirmed[id] = claim{by: last + window + slack, seen: c.seen}
			case now-last >= window:
				offline := false
				t.obs(id).Online = &offline
				if p := t.presence[id]; p != nil {
					p.online = false
				}
				t.s.log.Info("device shown offline: no heartbeat within the presence window", "device", id, "last_seen", last)
			}
		}
		t.mu.Unlock()
	}
}

// decodeHeartbeat decodes a heartbeat of device id: a live message, so the device is online.
func decodeHeartbeat(id string, payload []byte) (func(o *state.DeviceObservation), error) {
	hb, err := wire.DecodeHeartbeat(payload)
	if err == nil {
		err = hb.MatchTopic(id)
	}
	online := true
	return func(o *state.DeviceObservation) { o.Online = &online }, err
}

// decodeReport decodes a window report of device id (validation, drift, prediction drift,
// performance) and returns how it changes the device's pending observation: a numbered report
// is queued for acknowledgement (dropped, so sent again, when maxPendingReports wait), an
// unnumbered one is folded into the health summary of its runs edge.
func decodeReport(kind wire.Kind, id string, payload []byte) (func(o *state.DeviceObservation), error) {
	switch kind {
	case wire.KindValidation:
		v, err := wire.DecodeValidation(payload)
		if err == nil {
			err = v.MatchTopic(id)
		}
		return func(o *state.DeviceObservation) {
			if v.Numbered() {
				queueReport(o, state.NumberedReport{Epoch: v.Epoch, Seq: v.Seq, First: v.First,
					Health: state.HealthSummary{Model: v.Model, Version: v.Version, Rows: v.Rows, Invalid: v.Invalid, At: v.WindowEnd}})
				return
			}
			h := health(o, v.Model, v.Version, v.WindowEnd)
			h.Rows += v.Rows
			h.Invalid += v.Invalid
		}, err
	case wire.KindDrift:
		d, err := wire.DecodeDrift(payload)
		if err == nil {
			err = d.MatchTopic(id)
		}
		return func(o *state.DeviceObservation) {
			if d.Numbered() {
				queueReport(o, state.NumberedReport{Epoch: d.Epoch, Seq: d.Seq, First: d.First,
					Health: state.HealthSummary{Model: d.Model, Version: d.Version, DatasetDrift: d.DatasetDrift == 1, DriftShare: d.DriftShare, At: d.WindowEnd}})
				return
			}
			h := health(o, d.Model, d.Version, d.WindowEnd)
			h.DatasetDrift = h.DatasetDrift || d.DatasetDrift == 1
			h.DriftShare = max(h.DriftShare, d.DriftShare)
		}, err
	default:
		return decodeOutputReport(kind, id, payload)
	}
}

// decodeOutputReport decodes a prediction-drift or performance report of device id: numbered,
// its counts are queued for acknowledgement like decodeReport's; else folded into the output news.
func decodeOutputReport(kind wire.Kind, id string, payload []byte) (func(o *state.DeviceObservation), error) {
	switch kind {
	case wire.KindPredictionDrift:
		d, err := wire.DecodePredictionDrift(payload)
		if err == nil {
			err = d.MatchTopic(id)
		}
		return func(o *state.DeviceObservation) {
			if d.Numbered() {
				part := state.OutputHealth{Model: d.Model, Version: d.Version, At: d.WindowEnd, PredictionWindows: 1, PredictionDrift: d.Drift == 1}
				if part.PredictionDrift {
					part.PredictionDrifted = 1
				}
				queueReport(o, state.NumberedReport{Epoch: d.Epoch, Seq: d.Seq, First: d.First, Outputs: &part})
				return
			}
			h := outputHealth(o, d.Model, d.Version, d.WindowEnd)
			h.PredictionWindows++
			h.PredictionDrift = d.Drift == 1
			if h.PredictionDrift {
				h.PredictionDrifted++
			}
		}, err
	case wire.KindPerformance:
		p, err := wire.DecodePerformance(payload)
		if err == nil {
			err = p.MatchTopic(id)
		}
		return func(o *state.DeviceObservation) {
			if p.Numbered() {
				queueReport(o, state.NumberedReport{Epoch: p.Epoch, Seq: p.Seq, First: p.First, Outputs: &state.OutputHealth{
					Model: p.Model, Version: p.Version, At: p.WindowEnd,
					Labels: p.Labels, RelativeSum: p.Relative * float64(p.Labels), Relative: p.Relative, Metric: p.Metric, Value: p.Value}})
				return
			}
			h := outputHealth(o, p.Model, p.Version, p.WindowEnd)
			h.Labels += p.Labels
			h.RelativeSum += p.Relative * float64(p.Labels)
			h.Relative, h.Metric, h.Value = p.Relative, p.Metric, p.Value
		}, err
	default:
		return nil, fmt.Errorf("not a telemetry kind: %s", kind)
	}
}

// queueReport queues a numbered report for acknowledgement unless maxPendingReports already
// wait (then it is not acknowledged, and the agent sends it again).
func queueReport(o *state.DeviceObservation, r state.NumberedReport) {
	if len(o.Reports) < maxPendingReports {
		o.Reports = append(o.Reports, r)
	}
}

// health returns the observation's summary for one model version, starting a new one when the
// model or version changed (a summary describes one runs edge).
func health(o *state.DeviceObservation, model string, version int, at int64) *state.HealthSummary {
	if o.Health == nil || o.Health.Model != model || o.Health.Version != version {
		o.Health = &state.HealthSummary{Model: model, Version: version}
	}
	if at > o.Health.At {
		o.Health.At = at
	}
	return o.Health
}

// outputHealth returns the observation's output news for one model version (the news of
// another version, not yet flushed, is replaced: it describes a version the device left).
func outputHealth(o *state.DeviceObservation, model string, version int, at int64) *state.OutputHealth {
	if o.Outputs == nil || o.Outputs.Model != model || o.Outputs.Version != version {
		o.Outputs = &state.OutputHealth{Model: model, Version: version}
	}
	o.Outputs.At = max(o.Outputs.At, at)
	return o.Outputs
}

// mergeOutputs adds the counts of an unapplied older batch to the newer news of the same
// version (the counts are deltas: none may be lost or counted twice).
func mergeOutputs(old, cur *state.OutputHealth) *state.OutputHealth {
	switch {
	case old == nil:
		return cur
	case cur == nil:
		return old
	case old.Model != cur.Model || old.Version != cur.Version:
		return cur
	}
	if cur.PredictionWindows == 0 {
		cur.PredictionDrift = old.PredictionDrift
	}
	cur.PredictionWindows += old.PredictionWindows
	cur.PredictionDrifted += old.PredictionDrifted
	if cur.Labels == 0 {
		cur.Relative, cur.Metric, cur.Value = old.Relative, old.Metric, old.Value
	}
	cur.Labels += old.Labels
	cur.RelativeSum += old.RelativeSum
	cur.At = max(cur.At, old.At)
	return cur
}

func toStateReported(r wire.Reported) state.Reported {
	out := state.Reported{Rev: int64(r.Rev), TS: r.TS, AgentVersion: r.AgentVersion, Models: map[string]state.ReportedModel{}, DesiredStale: r.DesiredStale, RootExpired: r.RootExpired}
	for name, m := range r.Models {
		out.Models[name] = state.ReportedModel{Active: m.Active, Previous: m.Previous, Target: m.Target, State: string(m.State), LastError: m.LastError}
	}
	return out
}

func (t *telemetry) run(ctx context.Context) {
	tick := time.NewTicker(t.s.cfg.Interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			t.flush(fctx)
			cancel()
			return
		case <-tick.C:
			t.expire(t.clock())
			t.flush(ctx)
		}
	}
}

// maxBatchDevices is the most devices one DeviceTelemetry command carries. One command is one
// badger transaction on every node (~560 bytes written per device, more with numbered reports),
// and a transaction holds ~9.6 MB: at 100,000 devices a second's batch (every device that came
// online at once) was refused as too big, merged back, and grew until no batch applied again
// (issue 18, firmware-sim/loadgen). Bigger batches are cut into commands of this many devices.
const maxBatchDevices = 1000

// flush proposes the pending observations, in commands of at most maxBatchDevices devices
// proposed together (Raft appends them as one batch); the devices of a command that fails are
// merged back for the next flush.
func (t *telemetry) flush(ctx context.Context) {
	t.mu.Lock()
	if len(t.pending) == 0 {
		t.mu.Unlock()
		return
	}
	batch := t.pending
	t.pending = map[string]*state.DeviceObservation{}
	t.mu.Unlock()
	all := make([]state.DeviceObservation, 0, len(batch))
	for _, o := range batch {
		all = append(all, *o)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].ID < all[j].ID })
	parts := (len(all) + maxBatchDevices - 1) / maxBatchDevices
	errs := make([]error, parts)
	var wg sync.WaitGroup
	for p := range parts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := state.DeviceTelemetry{Devices: all[p*maxBatchDevices : min(len(all), (p+1)*maxBatchDevices)]}
			env, err := command.New(command.TypeDeviceTelemetry, "", 0, "hub", cmd)
			if err == nil {
				err = t.s.cfg.Apply(ctx, env)
			}
			errs[p] = err
		}()
	}
	wg.Wait()
	failed := map[string]*state.DeviceObservation{}
	var err error
	for p, e := range errs {
		if e == nil {
			t.s.m.batches.WithLabelValues("applied").Inc()
			continue
		}
		err = e
		for _, o := range all[p*maxBatchDevices : min(len(all), (p+1)*maxBatchDevices)] {
			failed[o.ID] = batch[o.ID]
		}
	}
	if err == nil {
		return
	}
	batch = failed
	t.s.m.batches.WithLabelValues("retry").Inc()
	t.s.log.Warn("telemetry batch not applied; will retry", "devices", len(batch), "err", err)
	// Merge back under newer news: what arrived meanwhile wins.
	t.mu.Lock()
	for id, old := range batch {
		cur, ok := t.pending[id]
		if !ok {
			t.pending[id] = old
			continue
		}
		if cur.Online == nil {
			cur.Online = old.Online
		}
		if cur.Reported == nil {
			cur.Reported = old.Reported
		}
		if cur.Health == nil {
			cur.Health = old.Health
		}
		cur.Reports = append(old.Reports, cur.Reports...)
		cur.Outputs = mergeOutputs(old.Outputs, cur.Outputs)
		cur.LastSeen = max(cur.LastSeen, old.LastSeen)
	}
	t.mu.Unlock()
}
