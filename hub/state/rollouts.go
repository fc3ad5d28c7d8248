package state

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/dgraph-io/badger/v4"

	"github.com/driftline/driftline/hub/command"
)

// Rollout states.
const (
	RolloutRunning    = "running"
	RolloutPaused     = "paused"
	RolloutCompleted  = "completed"
	RolloutAborted    = "aborted"
	RolloutRolledBack = "rolled_back"
)

// Per-device rollout states (SPEC section 5); the same words as wire.State.
const (
	DevPending     = "pending"
	DevNotified    = "notified"
	DevDownloading = "downloading"
	DevActivating  = "activating"
	DevActive      = "active"
	DevFailed      = "failed"
	DevRolledBack  = "rolled_back"
)

// DeviceStates lists the per-device states in lifecycle order.
var DeviceStates = []string{DevPending, DevNotified, DevDownloading, DevActivating, DevActive, DevFailed, DevRolledBack}

// Gate names.
const (
	GateFailureRate = "max_failure_rate"
	GateDriftShare  = "max_drift_share"
	GateInvalidRate = "max_invalid_rate"
	// GatePredictionDriftShare is the share of devices (with prediction evidence) whose
	// predictions drifted from the version's output reference.
	GatePredictionDriftShare = "max_prediction_drift_share"
	// GatePerformance is the label-weighted performance relative to the version's reference
	// metric (1: as good as the validation set); it fails when below the threshold, and decides
	// only once MinPerformanceLabels labels joined.
	GatePerformance = "min_performance"
)

// DefaultMinPerformanceLabels is Gates.MinPerformanceLabels when unset.
const DefaultMinPerformanceLabels = 100

// Gates are a rollout's thresholds; a nil gate is not checked.
type Gates struct {
	MaxFailureRate *float64 `json:"max_failure_rate,omitempty"`
	MaxDriftShare  *float64 `json:"max_drift_share,omitempty"`
	MaxInvalidRate *float64 `json:"max_invalid_rate,omitempty"`
	// MaxPredictionDriftShare and MinPerformance watch the model's outputs (SPEC section 10).
	MaxPredictionDriftShare *float64 `json:"max_prediction_drift_share,omitempty"`
	MinPerformance          *float64 `json:"min_performance,omitempty"`
	// MinPerformanceLabels is how many joined labels min_performance needs before it may
	// decide (default DefaultMinPerformanceLabels).
	MinPerformanceLabels int64 `json:"min_performance_labels,omitempty"`
}

// GateValue is one gate's value as the controller last saw it.
type GateValue struct {
	Value     float64 `json:"value"`
	Threshold float64 `json:"threshold"`
	Failed    bool    `json:"failed"`
	// Evidence is how many devices (or rows, for the invalid rate) the value rests on.
	Evidence int64 `json:"evidence"`
}

// Rollout is one staged deployment of a model version to a fixed set of devices.
type Rollout struct {
	ID       string `json:"id"`
	Model    string `json:"model"`
	Version  int    `json:"version"`
	Selector string `json:"selector"`
	// WaveSizes are cumulative device counts: wave i covers devices [WaveSizes[i-1], WaveSizes[i]).
	WaveSizes     []int                `json:"wave_sizes"`
	BakeSeconds   int                  `json:"bake_seconds"`
	Gates         Gates                `json:"gate_thresholds"`
	OnGateFailure string               `json:"on_gate_failure"`
	DeviceTimeout int                  `json:"device_timeout_seconds"`
	SetAlias      string               `json:"set_alias,omitempty"`
	State         string               `json:"state"`
	Wave          int                  `json:"wave"`
	WaveStartedAt int64                `json:"wave_started_at,omitempty"`
	WaveDoneAt    int64                `json:"wave_done_at,omitempty"`
	Reason        string               `json:"reason,omitempty"`
	GateValues    map[string]GateValue `json:"gates"`
	Total         int                  `json:"total"`
	Counts        map[string]int       `json:"devices"`
	CreatedBy     string               `json:"created_by"`
	CreatedAt     int64                `json:"created_at"`
	UpdatedAt     int64                `json:"updated_at"`
}

// Active reports whether the rollout still holds its devices (running or paused).
func (r Rollout) Active() bool { return r.State == RolloutRunning || r.State == RolloutPaused }

// Waves is the number of waves.
func (r Rollout) Waves() int { return len(r.WaveSizes) }

// RolloutDevice is one device's place in a rollout.
type RolloutDevice struct {
	Rollout string `json:"rollout"`
	ID      string `json:"id"`
	Wave    int    `json:"wave"`
	// Order is the device's position in the rollout's deterministic order.
	Order int `json:"order"`
	// Previous is the version the device ran before the rollout (0: none).
	Previous int    `json:"previous"`
	State    string `json:"state"`
	Since    int64  `json:"since"`
	Error    string `json:"error,omitempty"`
}

// RolloutCreate creates a rollout; the proposer resolved the selector and ordered the devices.
// Payload of command.TypeRolloutCreate.
type RolloutCreate struct {
	ID            string   `json:"id"`
	Model         string   `json:"model"`
	Version       int      `json:"version"`
	Selector      string   `json:"selector"`
	Devices       []string `json:"devices"`
	WaveSizes     []int    `json:"wave_sizes"`
	BakeSeconds   int      `json:"bake_seconds"`
	Gates         Gates    `json:"gates"`
	OnGateFailure string   `json:"on_gate_failure"`
	DeviceTimeout int      `json:"device_timeout_seconds"`
	SetAlias      string   `json:"set_alias,omitempty"`
	// Part places the command among the parts of a plan split by Processor.Split (nil: the
	// whole plan in one command, with Devices all of it).
	Part *Part `json:"part,omitempty"`
}

// Rollout transition actions.
const (
	ActStartWave = "start_wave" // the controller starts the next wave
	ActWaveDone  = "wave_done"  // every device of the wave settled; the bake starts
	ActDevices   = "devices"    // per-device state changes observed from reports
	ActGates     = "gates"      // gate values refreshed (no state change)
	ActComplete  = "complete"
	ActPause     = "pause"
	ActResume    = "resume"
	ActAbort     = "abort"
	ActRollback  = "rollback"
)

// DeviceUpdate is one device's new state in a rollout.
type DeviceUpdate struct {
	ID    string `json:"id"`
	State string `json:"state"`
	Error string `json:"error,omitempty"`
}

// RolloutTransition is one decision about a rollout, with the inputs it was made on (the gate
// values), so the audit log shows why. Payload of command.TypeRolloutTransition.
//
// FromState and FromWave are what the proposer saw: Apply refuses (ErrConflict) a transition
// whose precondition no longer holds, so a decision replayed by a new leader is never applied
// twice.
type RolloutTransition struct {
	ID        string               `json:"id"`
	Action    string               `json:"action"`
	FromState string               `json:"from_state"`
	FromWave  int                  `json:"from_wave"`
	Reason    string               `json:"reason,omitempty"`
	Gates     map[string]GateValue `json:"gates,omitempty"`
	Devices   []DeviceUpdate       `json:"devices,omitempty"`
	// Part places the command among the parts of a transition split by Processor.Split (nil:
	// every device of the rollout, or of the wave started).
	Part *Part `json:"part,omitempty"`
}

func rolloutKey(id string) []byte              { return []byte("fsm/ro/" + id) }
func rolloutDevicePrefix(id string) string     { return "fsm/rd/" + id + "/" }
func rolloutDeviceKey(id, dev string) []byte   { return []byte(rolloutDevicePrefix(id) + dev) }
func rolloutIndexKey(model, dev string) []byte { return []byte("fsm/rx/" + model + "/" + dev) }

func getRollout(txn *badger.Txn, id string) (Rollout, error) {
	var r Rollout
	if err := getJSON(txn, rolloutKey(id), &r); err != nil {
		if errors.Is(err, ErrNotFound) {
			return r, notFound("rollout %s", id)
		}
		return r, err
	}
	return r, nil
}

// ConflictError lists the devices a new rollout shares with an active rollout of the same model.
type ConflictError struct {
	Rollout string
	Devices []string
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("devices already in active rollout %s of this model: %s", e.Rollout, strings.Join(e.Devices, ", "))
}

func (e *ConflictError) Unwrap() error { return ErrConflict }

func rolloutCreate(txn *badger.Txn, env command.Envelope, c RolloutCreate) (any, *auditNote, error) {
	if c.Part != nil {
		return rolloutPlanPart(txn, env, c)
	}
	r, err := newRollout(txn, env, c, len(c.Devices))
	if err != nil {
		return nil, nil, err
	}
	devices, err := planDevices(txn, c.Model, c.Devices)
	if err != nil {
		return nil, nil, err
	}
	if err := writePlan(txn, env, c, devices, 0); err != nil {
		return nil, nil, err
	}
	return commitRollout(txn, r)
}

// newRollout checks a rollout's own fields for a plan of total devices (its devices are checked
// by planDevices) and returns it as it starts: running, every device pending.
func newRollout(txn *badger.Txn, env command.Envelope, c RolloutCreate, total int) (Rollout, error) {
	if !ValidName(c.ID) || total <= 0 || len(c.WaveSizes) == 0 {
		return Rollout{}, invalid("rollout needs an id, devices and waves")
	}
	if c.OnGateFailure != "pause" && c.OnGateFailure != "rollback" {
		return Rollout{}, invalid("on_gate_failure must be pause or rollback")
	}
	for _, k := range [][]byte{rolloutKey(c.ID), rolloutPlanKey(c.ID)} {
		if ok, err := exists(txn, k); err != nil || ok {
			if err != nil {
				return Rollout{}, err
			}
			return Rollout{}, existsErr("rollout %s", c.ID)
		}
	}
	mv, err := getModelVersion(txn, c.Model, c.Version)
	if err != nil {
		return Rollout{}, err
	}
	if mv.Status != StatusApproved {
		return Rollout{}, invalid("model:%s@%d is %s: only approved versions roll out", c.Model, c.Version, mv.Status)
	}
	prev := 0
	for _, s := range c.WaveSizes {
		if s <= prev || s > total {
			return Rollout{}, invalid("wave sizes must grow and stay within the %d devices", total)
		}
		prev = s
	}
	return Rollout{
		ID: c.ID, Model: c.Model, Version: c.Version, Selector: c.Selector, WaveSizes: c.WaveSizes,
		BakeSeconds: c.BakeSeconds, Gates: c.Gates, OnGateFailure: c.OnGateFailure, DeviceTimeout: c.DeviceTimeout,
		SetAlias: c.SetAlias, State: RolloutRunning, GateValues: map[string]GateValue{}, Total: total,
		Counts: map[string]int{DevPending: total}, CreatedBy: env.Actor, CreatedAt: env.Time, UpdatedAt: env.Time,
	}, nil
}

// planDevices reads the devices of a plan: each must exist and belong to no active rollout of
// model (a *ConflictError names the first 20 that do).
func planDevices(txn *badger.Txn, model string, ids []string) ([]storedDevice, error) {
	var overlap []string
	owner := ""
	devices := make([]storedDevice, len(ids))
	for i, id := range ids {
		d, err := getDevice(txn, id)
		if err != nil {
			return nil, err
		}
		devices[i] = d
		var other string
		if err := getJSON(txn, rolloutIndexKey(model, id), &other); err == nil {
			if owner == "" {
				owner = other
			}
			if len(overlap) < 20 {
				overlap = append(overlap, id)
			}
		}
	}
	if len(overlap) > 0 {
		return nil, &ConflictError{Rollout: owner, Devices: overlap}
	}
	return devices, nil
}

// writePlan records devices, the plan's devices from order from on: each one's place (with the
// version it ran before), its claim (rx/) and its order index entry (rn/).
func writePlan(txn *badger.Txn, env command.Envelope, c RolloutCreate, devices []storedDevice, from int) error {
	for i, d := range devices {
		order := from + i
		previous := 0
		if rm, ok := d.Reported.Models[c.Model]; ok && rm.Active != nil {
			previous = *rm.Active
		} else if dm, ok := d.Desired[c.Model]; ok {
			previous = dm.Version
		}
		rd := RolloutDevice{Rollout: c.ID, ID: d.ID, Wave: waveOf(c.WaveSizes, order), Order: order, Previous: previous, State: DevPending, Since: env.Time}
		if err := putJSON(txn, rolloutDeviceKey(c.ID, d.ID), rd); err != nil {
			return err
		}
		if err := putJSON(txn, rolloutIndexKey(c.Model, d.ID), c.ID); err != nil {
			return err
		}
		if err := txn.Set(rolloutOrderKey(c.ID, order), []byte(d.ID)); err != nil {
			return err
		}
	}
	return nil
}

// commitRollout writes planned rollout r: from here on readers see it.
func commitRollout(txn *badger.Txn, r Rollout) (any, *auditNote, error) {
	if err := putJSON(txn, rolloutKey(r.ID), r); err != nil {
		return nil, nil, err
	}
	if err := PutRolloutDeploys(txn, r.ID, r.Model, r.Version, r.CreatedAt); err != nil {
		return nil, nil, err
	}
	return r, &auditNote{"rollout.create", RolloutNode(r.ID),
		fmt.Sprintf("%s devices=%d waves=%v gates=%s", ModelNode(r.Model, r.Version), r.Total, r.WaveSizes, gatesString(r.Gates))}, nil
}

// waveOf returns the 1-based wave of the device at position i.
func waveOf(sizes []int, i int) int {
	for w, s := range sizes {
		if i < s {
			return w + 1
		}
	}
	return 0 // beyond the last wave: never deployed
}

// MinPerfLabels is MinPerformanceLabels with its default.
func (g Gates) MinPerfLabels() int64 {
	if g.MinPerformanceLabels > 0 {
		return g.MinPerformanceLabels
	}
	return DefaultMinPerformanceLabels
}

func gatesString(g Gates) string {
	var parts []string
	if g.MaxFailureRate != nil {
		parts = append(parts, fmt.Sprintf("%s=%g", GateFailureRate, *g.MaxFailureRate))
	}
	if g.MaxDriftShare != nil {
		parts = append(parts, fmt.Sprintf("%s=%g", GateDriftShare, *g.MaxDriftShare))
	}
	if g.MaxInvalidRate != nil {
		parts = append(parts, fmt.Sprintf("%s=%g", GateInvalidRate, *g.MaxInvalidRate))
	}
	if g.MaxPredictionDriftShare != nil {
		parts = append(parts, fmt.Sprintf("%s=%g", GatePredictionDriftShare, *g.MaxPredictionDriftShare))
	}
	if g.MinPerformance != nil {
		parts = append(parts, fmt.Sprintf("%s=%g(labels>=%d)", GatePerformance, *g.MinPerformance, g.MinPerfLabels()))
	}
	return strings.Join(parts, ",")
}

func gateValuesString(g map[string]GateValue) string {
	keys := make([]string, 0, len(g))
	for k := range g {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		v := g[k]
		mark := ""
		if v.Failed {
			mark = "!"
		}
		parts = append(parts, fmt.Sprintf("%s=%.4g/%g%s(n=%d)", k, v.Value, v.Threshold, mark, v.Evidence))
	}
	return strings.Join(parts, " ")
}

// rolloutDevices returns the rollout's devices in order, optionally of one wave (0: all).
func rolloutDevices(txn *badger.Txn, id string, wave int) ([]RolloutDevice, error) {
	if wave > 0 {
		// One wave's devices through the order index, not by reading every device.
		r, err := getRollout(txn, id)
		if errors.Is(err, ErrNotFound) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		devs, err := devicesIn(txn, id, waveSpan(r, wave))
		var out []RolloutDevice
		for _, rd := range devs {
			if rd.Wave == wave {
				out = append(out, rd)
			}
		}
		return out, err
	}
	var out []RolloutDevice
	it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(rolloutDevicePrefix(id)), PrefetchValues: true, PrefetchSize: 64})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		var rd RolloutDevice
		if err := it.Item().Value(func(b []byte) error { return jsonUnmarshal(b, &rd) }); err != nil {
			return nil, err
		}
		if wave == 0 || rd.Wave == wave {
			out = append(out, rd)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Order < out[j].Order })
	return out, nil
}

// setDesired points one device at a version (0 clears) as part of a rollout.
func setDesired(txn *badger.Txn, env command.Envelope, id, model string, version int, rollout string, em emitter) error {
	d, err := getDevice(txn, id)
	if errors.Is(err, ErrNotFound) {
		return nil // removed meanwhile
	}
	if err != nil {
		return err
	}
	if d.Desired == nil {
		d.Desired = map[string]DesiredModel{}
	}
	if cur, ok := d.Desired[model]; ok && cur.Version == version && cur.RolloutID == rollout {
		return nil
	}
	if version == 0 {
		if _, ok := d.Desired[model]; !ok {
			return nil
		}
		delete(d.Desired, model)
	} else {
		d.Desired[model] = DesiredModel{Version: version, RolloutID: rollout, SetAt: env.Time}
	}
	d.DesiredRev++
	em.add(Change{Kind: ChangeDesired, Device: id, Rev: d.DesiredRev})
	return putDevice(txn, d)
}

func rolloutTransition(txn *badger.Txn, env command.Envelope, c RolloutTransition, em emitter) (any, *auditNote, error) {
	if c.Part != nil && !c.Part.First {
		return rolloutContinue(txn, env, c, em)
	}
	sp := allOrders
	if c.Part != nil {
		sp = span{c.Part.From, c.Part.To}
	}
	r, err := getRollout(txn, c.ID)
	if err != nil {
		return nil, nil, err
	}
	if c.FromState != "" && (r.State != c.FromState || r.Wave != c.FromWave) {
		return nil, nil, conflict("rollout %s is %s in wave %d, not %s in wave %d", c.ID, r.State, r.Wave, c.FromState, c.FromWave)
	}
	if c.Gates != nil {
		r.GateValues = c.Gates
	}
	note := &auditNote{"rollout." + c.Action, RolloutNode(c.ID), strings.TrimSpace(c.Reason + " " + gateValuesString(c.Gates))}
	switch c.Action {
	case ActGates:
		note = nil
	case ActDevices:
		note = nil
		if err := applyDeviceUpdates(txn, &r, c.Devices, env.Time); err != nil {
			return nil, nil, err
		}
	case ActStartWave:
		if err := startWave(txn, env, &r, em, c.Part); err != nil {
			return nil, nil, err
		}
		ws := waveSpan(r, r.Wave)
		note.detail = fmt.Sprintf("wave %d of %d (%d devices) %s", r.Wave, r.Waves(), ws.to-ws.from, note.detail)
	case ActWaveDone:
		if r.WaveDoneAt != 0 {
			return nil, nil, conflict("wave %d of rollout %s already settled", r.Wave, c.ID)
		}
		r.WaveDoneAt = env.Time
		note.detail = fmt.Sprintf("wave %d settled; baking %ds %s", r.Wave, r.BakeSeconds, note.detail)
	case ActComplete:
		if err := completeRollout(txn, &r, sp); err != nil {
			return nil, nil, err
		}
	case ActPause:
		if r.State != RolloutRunning {
			return nil, nil, conflict("rollout %s is %s, not running", c.ID, r.State)
		}
		r.State = RolloutPaused
	case ActResume:
		if r.State != RolloutPaused {
			return nil, nil, conflict("rollout %s is %s, not paused", c.ID, r.State)
		}
		r.State = RolloutRunning
		// The bake of the current wave starts over: the gate that paused it must pass anew.
		if r.WaveDoneAt != 0 {
			r.WaveDoneAt = env.Time
		}
	case ActAbort:
		if !r.Active() {
			return nil, nil, conflict("rollout %s is %s", c.ID, r.State)
		}
		r.State = RolloutAborted
		if err := releaseDevices(txn, r, sp); err != nil {
			return nil, nil, err
		}
	case ActRollback:
		if err := rollBackRollout(txn, env, &r, em, sp); err != nil {
			return nil, nil, err
		}
	default:
		return nil, nil, invalid("unknown rollout action %q", c.Action)
	}
	if c.Reason != "" || c.Action == ActPause || c.Action == ActRollback || c.Action == ActAbort {
		r.Reason = c.Reason
	}
	r.UpdatedAt = env.Time
	if err := putJSON(txn, rolloutKey(c.ID), r); err != nil {
		return nil, nil, err
	}
	return r, note, nil
}

// startWave moves running rollout r to its next wave and tells that wave's devices (their desired
// state names the version; their rollout state becomes notified). With part, only the devices of
// its order range are told (the first part of a start split by Processor.Split), and the wave
// must be part.Wave.
func startWave(txn *badger.Txn, env command.Envelope, r *Rollout, em emitter, part *Part) error {
	if r.State != RolloutRunning || r.Wave >= r.Waves() {
		return conflict("rollout %s cannot start a wave: %s, wave %d of %d", r.ID, r.State, r.Wave, r.Waves())
	}
	r.Wave++
	r.WaveStartedAt, r.WaveDoneAt = env.Time, 0
	sp := waveSpan(*r, r.Wave)
	if part != nil {
		if part.Wave != r.Wave {
			return conflict("rollout %s would start wave %d, not %d", r.ID, r.Wave, part.Wave)
		}
		sp = sp.and(span{part.From, part.To})
	}
	return notifyWave(txn, env, r, em, sp)
}

// notifyWave tells the pending devices of r's current wave in orders sp. Devices already told
// are left alone, so telling a range twice changes nothing.
func notifyWave(txn *badger.Txn, env command.Envelope, r *Rollout, em emitter, sp span) error {
	devs, err := devicesIn(txn, r.ID, sp)
	if err != nil {
		return err
	}
	for _, rd := range devs {
		if rd.Wave != r.Wave || rd.State != DevPending {
			continue
		}
		if err := setDesired(txn, env, rd.ID, r.Model, r.Version, r.ID, em); err != nil {
			return err
		}
		if err := setDeviceState(txn, r, rd, DevNotified, "", env.Time); err != nil {
			return err
		}
	}
	return nil
}

// completeRollout ends running rollout r successfully: its alias (if any) moves to the version and its
// devices (those of orders sp) are released.
func completeRollout(txn *badger.Txn, r *Rollout, sp span) error {
	if r.State != RolloutRunning {
		return conflict("rollout %s is %s", r.ID, r.State)
	}
	r.State = RolloutCompleted
	if r.SetAlias != "" {
		if _, _, err := aliasSet(txn, AliasSet{Model: r.Model, Alias: r.SetAlias, Version: r.Version}); err != nil {
			return err
		}
	}
	return releaseDevices(txn, *r, sp)
}

// rollBackRollout sends every device r told (of orders sp) back to the version it ran before
// (devices never told keep theirs), marks them rolled back and releases them.
func rollBackRollout(txn *badger.Txn, env command.Envelope, r *Rollout, em emitter, sp span) error {
	if !r.Active() && r.State != RolloutCompleted {
		return conflict("rollout %s is %s", r.ID, r.State)
	}
	r.State = RolloutRolledBack
	return rollBackDevices(txn, env, r, em, sp)
}

// rollBackDevices rolls back the told devices of orders sp that are not rolled back yet and
// releases every device of sp (releaseDevices), reading the devices once for both.
func rollBackDevices(txn *badger.Txn, env command.Envelope, r *Rollout, em emitter, sp span) error {
	devs, err := devicesIn(txn, r.ID, sp)
	if err != nil {
		return err
	}
	for _, rd := range devs {
		// Never told (pending): nothing to undo; rolled back: done already.
		if rd.State != DevPending && rd.State != DevRolledBack {
			if err := setDesired(txn, env, rd.ID, r.Model, rd.Previous, r.ID, em); err != nil {
				return err
			}
			if err := setDeviceState(txn, r, rd, DevRolledBack, "", env.Time); err != nil {
				return err
			}
		}
		if err := dropClaim(txn, r.Model, rd.ID, r.ID); err != nil {
			return err
		}
	}
	return nil
}

// deviceStateRank orders states so that reports can only move a device forward (no duplicate
// or backward transitions from late or repeated messages).
var deviceStateRank = map[string]int{
	DevPending: 0, DevNotified: 1, DevDownloading: 2, DevActivating: 3, DevActive: 4, DevFailed: 4, DevRolledBack: 5,
}

func applyDeviceUpdates(txn *badger.Txn, r *Rollout, ups []DeviceUpdate, ts int64) error {
	for _, u := range ups {
		var rd RolloutDevice
		if err := getJSON(txn, rolloutDeviceKey(r.ID, u.ID), &rd); err != nil {
			if errors.Is(err, ErrNotFound) {
				continue
			}
			return err
		}
		if _, ok := deviceStateRank[u.State]; !ok {
			return invalid("device state %q", u.State)
		}
		if rd.State == u.State || deviceStateRank[u.State] < deviceStateRank[rd.State] || rd.State == DevPending {
			continue
		}
		if err := setDeviceState(txn, r, rd, u.State, u.Error, ts); err != nil {
			return err
		}
	}
	return nil
}

func setDeviceState(txn *badger.Txn, r *Rollout, rd RolloutDevice, st, errText string, ts int64) error {
	if r.Counts == nil {
		r.Counts = map[string]int{}
	}
	if r.Counts[rd.State]--; r.Counts[rd.State] <= 0 {
		delete(r.Counts, rd.State)
	}
	r.Counts[st]++
	rd.State, rd.Since, rd.Error = st, ts, errText
	return putJSON(txn, rolloutDeviceKey(r.ID, rd.ID), rd)
}

// releaseDevices drops the rollout's claim on its devices of orders sp so another rollout may
// take them.
func releaseDevices(txn *badger.Txn, r Rollout, sp span) error {
	devs, err := devicesIn(txn, r.ID, sp)
	if err != nil {
		return err
	}
	for _, rd := range devs {
		if err := dropClaim(txn, r.Model, rd.ID, r.ID); err != nil {
			return err
		}
	}
	return nil
}

// dropClaim deletes device dev's claim (rx/) if rollout id holds it.
func dropClaim(txn *badger.Txn, model, dev, id string) error {
	var owner string
	if err := getJSON(txn, rolloutIndexKey(model, dev), &owner); err == nil && owner == id {
		return txn.Delete(rolloutIndexKey(model, dev))
	}
	return nil
}

// Rollouts lists rollouts by id.
func (r Reader) Rollouts(cursor string, limit int) (Page[Rollout], error) {
	return list[Rollout](r.DB, "fsm/ro/", cursor, limit, false, nil)
}

// Rollout returns one rollout.
func (r Reader) Rollout(id string) (Rollout, error) {
	return get[Rollout](r.DB, rolloutKey(id), "rollout "+id)
}

// RolloutDevices returns a rollout's devices in order (wave 0: every wave).
func (r Reader) RolloutDevices(id string, wave int) ([]RolloutDevice, error) {
	var out []RolloutDevice
	err := r.DB.View(func(txn *badger.Txn) error {
		var err error
		out, err = rolloutDevices(txn, id, wave)
		return err
	})
	return out, err
}

// RunsEdge returns the runs edge from a device to a model version (its health attributes), or
// ErrNotFound.
func (r Reader) RunsEdge(device, model string, version int) (LineageEdge, error) {
	return get[LineageEdge](r.DB, edgeKey(pLineageOut, DeviceNode(device), EdgeRuns, ModelNode(model, version)), "runs edge")
}
