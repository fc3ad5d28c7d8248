package state

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"

	"github.com/dgraph-io/badger/v4"

	"github.com/driftline/driftline/hub/command"
)

// A rollout's plan, each wave start and its release (complete, abort, rollback) write a few keys
// per device. One command is one badger transaction on every node (~9.6 MB on the hub), which
// capped a rollout at ~15,000-20,000 devices (issue 18). Processor.Split cuts such a command into
// parts of at most PartDevices devices, which the store proposes together as ONE Raft entry
// (store.Splitter): nothing else is applied between them, every node applies them in the same
// order, and a node that stops mid-entry resumes at the next part (the applied position counts
// the envelopes of an entry), so a half-written plan or half-started wave is never left behind by
// a crash, a leader change or a snapshot (raft snapshots and backups are taken between entries).
//
// A plan's parts: plan parts (each checks and writes its devices: place, claim, order index)
// build a hidden header (rp/ID) that readers do not see; the commit part writes the rollout (the
// moment readers see it, whole); discard parts after it delete what the plan parts wrote if any
// of them refused (a device gone or claimed by another rollout), so a refused plan leaves
// nothing. A transition's first part makes the decision (state, wave) and handles its range;
// the following parts handle their ranges under the state the first part set, idempotently.

// DefaultPartDevices is Processor.PartDevices when unset: a part of a wave start writes two
// documents per device (~0.5 MB for 1,000 plain devices), far below a transaction.
const DefaultPartDevices = 1000

// Part stages of a split rollout plan (RolloutCreate.Part.Stage).
const (
	PartPlan    = "plan"
	PartCommit  = "commit"
	PartDiscard = "discard"
)

// Part places one command among the parts of a command split by Processor.Split.
type Part struct {
	// Stage is a plan part's stage (PartPlan, PartCommit, PartDiscard); empty for a transition.
	Stage string `json:"stage,omitempty"`
	// From and To are the device orders [From, To) the part handles.
	From int `json:"from"`
	To   int `json:"to"`
	// Total is the plan's device count (plan parts).
	Total int `json:"total,omitempty"`
	// Wave is the wave a start_wave part starts.
	Wave int `json:"wave,omitempty"`
	// First marks the part that makes the decision; Last the last part of its stage.
	First bool `json:"first,omitempty"`
	Last  bool `json:"last,omitempty"`
}

// span is the device orders [from, to).
type span struct{ from, to int }

// maxOrder bounds orders (10 digits in rn/ keys).
const maxOrder = 9_999_999_999

var allOrders = span{0, maxOrder}

func (s span) and(o span) span { return span{max(s.from, o.from), min(s.to, o.to)} }

// waveSpan is the orders of r's wave w (1-based).
func waveSpan(r Rollout, w int) span {
	if w < 1 || w > len(r.WaveSizes) {
		return span{}
	}
	from := 0
	if w > 1 {
		from = r.WaveSizes[w-2]
	}
	return span{from, r.WaveSizes[w-1]}
}

func rolloutPlanKey(id string) []byte     { return []byte("fsm/rp/" + id) }
func rolloutOrderPrefix(id string) string { return "fsm/rn/" + id + "/" }
func rolloutOrderKey(id string, order int) []byte {
	return []byte(fmt.Sprintf("%s%010d", rolloutOrderPrefix(id), order))
}

// orderedIDs returns the device ids of rollout id at orders sp, from the order index.
func orderedIDs(txn *badger.Txn, id string, sp span) ([]string, error) {
	var ids []string
	end := rolloutOrderKey(id, min(sp.to, maxOrder))
	it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(rolloutOrderPrefix(id)), PrefetchValues: true, PrefetchSize: 256})
	defer it.Close()
	for it.Seek(rolloutOrderKey(id, sp.from)); it.Valid() && bytes.Compare(it.Item().Key(), end) < 0; it.Next() {
		if err := it.Item().Value(func(b []byte) error { ids = append(ids, string(b)); return nil }); err != nil {
			return nil, err
		}
	}
	return ids, nil
}

// devicesIn returns the devices of rollout id at orders sp, in order: through the order index,
// or, for a rollout planned before it existed (no rn/ keys), by reading all its devices.
func devicesIn(txn *badger.Txn, id string, sp span) ([]RolloutDevice, error) {
	indexed, err := exists(txn, rolloutOrderKey(id, 0))
	if err != nil {
		return nil, err
	}
	if !indexed {
		all, err := rolloutDevices(txn, id, 0)
		if err != nil {
			return nil, err
		}
		var out []RolloutDevice
		for _, rd := range all {
			if rd.Order >= sp.from && rd.Order < sp.to {
				out = append(out, rd)
			}
		}
		return out, nil
	}
	ids, err := orderedIDs(txn, id, sp)
	if err != nil {
		return nil, err
	}
	out := make([]RolloutDevice, 0, len(ids))
	for _, dev := range ids {
		var rd RolloutDevice
		if err := getJSON(txn, rolloutDeviceKey(id, dev), &rd); err != nil {
			return nil, err
		}
		out = append(out, rd)
	}
	return out, nil
}

// rolloutPlan is the hidden header of a plan being written in parts (rp/ID).
type rolloutPlan struct {
	Rollout Rollout `json:"rollout"`
	// Planned is how many devices (orders [0, Planned)) the plan parts wrote.
	Planned int `json:"planned"`
	// Failed is why a plan part refused; the commit part answers it and writes nothing.
	Failed *planFailure `json:"failed,omitempty"`
}

// planFailure is a plan part's refusal, kept to be answered by the commit part.
type planFailure struct {
	Kind    string   `json:"kind"` // "overlap" (a *ConflictError), "conflict", "not_found", "invalid"
	Detail  string   `json:"detail"`
	Rollout string   `json:"rollout,omitempty"` // a *ConflictError's
	Devices []string `json:"devices,omitempty"`
}

func failureOf(err error) *planFailure {
	var ce *ConflictError
	switch {
	case errors.As(err, &ce):
		return &planFailure{Kind: "overlap", Detail: ce.Error(), Rollout: ce.Rollout, Devices: ce.Devices}
	case errors.Is(err, ErrNotFound):
		return &planFailure{Kind: "not_found", Detail: err.Error()}
	case errors.Is(err, ErrConflict):
		return &planFailure{Kind: "conflict", Detail: err.Error()}
	}
	return &planFailure{Kind: "invalid", Detail: err.Error()}
}

func (f *planFailure) err() error {
	switch f.Kind {
	case "overlap":
		return &ConflictError{Rollout: f.Rollout, Devices: f.Devices}
	case "not_found":
		return fmt.Errorf("%w: %s", ErrNotFound, f.Detail)
	case "conflict":
		return fmt.Errorf("%w: %s", ErrConflict, f.Detail)
	}
	return fmt.Errorf("%w: %s", ErrInvalid, f.Detail)
}

func isDomain(err error) bool {
	return errors.Is(err, ErrNotFound) || errors.Is(err, ErrConflict) || errors.Is(err, ErrInvalid)
}

// rolloutPlanPart applies one part of a split plan.
func rolloutPlanPart(txn *badger.Txn, env command.Envelope, c RolloutCreate) (any, *auditNote, error) {
	p := *c.Part
	switch p.Stage {
	case PartCommit:
		var h rolloutPlan
		if err := getJSON(txn, rolloutPlanKey(c.ID), &h); err != nil {
			if errors.Is(err, ErrNotFound) {
				return nil, nil, conflict("rollout %s has no plan in progress", c.ID)
			}
			return nil, nil, err
		}
		if h.Failed != nil {
			return nil, nil, h.Failed.err()
		}
		if h.Planned != h.Rollout.Total {
			return nil, nil, conflict("the plan of rollout %s holds %d of its %d devices", c.ID, h.Planned, h.Rollout.Total)
		}
		if err := txn.Delete(rolloutPlanKey(c.ID)); err != nil {
			return nil, nil, err
		}
		return commitRollout(txn, h.Rollout)
	case PartDiscard:
		return nil, nil, discardPlan(txn, c.ID, c.Model, p)
	case PartPlan:
		return nil, nil, planPart(txn, env, c, p)
	}
	return nil, nil, invalid("rollout plan part of stage %q", p.Stage)
}

// planPart checks and writes the devices of one plan part. The first part refuses a bad rollout
// outright (writing nothing); a later part that finds its devices refused records why in the
// header (the commit part answers it, the discard parts undo the plan) and returns no error.
func planPart(txn *badger.Txn, env command.Envelope, c RolloutCreate, p Part) error {
	if p.From < 0 || p.To-p.From != len(c.Devices) || p.To > p.Total {
		return invalid("rollout plan part [%d,%d) of %d holds %d devices", p.From, p.To, p.Total, len(c.Devices))
	}
	var h rolloutPlan
	if p.From == 0 {
		r, err := newRollout(txn, env, c, p.Total)
		if err != nil {
			return err
		}
		h.Rollout = r
	} else {
		if err := getJSON(txn, rolloutPlanKey(c.ID), &h); err != nil {
			if errors.Is(err, ErrNotFound) {
				return conflict("rollout %s has no plan in progress", c.ID)
			}
			return err
		}
		if h.Failed != nil {
			return nil
		}
		if h.Planned != p.From {
			h.Failed = failureOf(conflict("rollout %s: devices %d-%d of its plan were not written", c.ID, h.Planned, p.From-1))
			return putJSON(txn, rolloutPlanKey(c.ID), h)
		}
	}
	devices, err := planDevices(txn, c.Model, c.Devices)
	if err != nil {
		if p.From == 0 || !isDomain(err) {
			return err
		}
		h.Failed = failureOf(err)
		return putJSON(txn, rolloutPlanKey(c.ID), h)
	}
	if err := writePlan(txn, env, c, devices, p.From); err != nil {
		return err
	}
	h.Planned = p.To
	return putJSON(txn, rolloutPlanKey(c.ID), h)
}

// discardPlan deletes what the plan parts wrote for orders [p.From, p.To) when the plan was not
// committed (its header remains); the last discard part deletes the header. After a commit it
// does nothing.
func discardPlan(txn *badger.Txn, id, model string, p Part) error {
	if ok, err := exists(txn, rolloutPlanKey(id)); err != nil || !ok {
		return err
	}
	ids, err := orderedIDs(txn, id, span{p.From, p.To})
	if err != nil {
		return err
	}
	for i, dev := range ids {
		if err := dropClaim(txn, model, dev, id); err != nil {
			return err
		}
		if err := txn.Delete(rolloutDeviceKey(id, dev)); err != nil {
			return err
		}
		if err := txn.Delete(rolloutOrderKey(id, p.From+i)); err != nil {
			return err
		}
	}
	if p.Last {
		return txn.Delete(rolloutPlanKey(id))
	}
	return nil
}

// rolloutContinue applies a later part of a split transition: the first part made the decision,
// this one handles its device range under the state it left. Devices already handled are left
// alone, so a part applied twice changes nothing.
func rolloutContinue(txn *badger.Txn, env command.Envelope, c RolloutTransition, em emitter) (any, *auditNote, error) {
	r, err := getRollout(txn, c.ID)
	if err != nil {
		return nil, nil, err
	}
	sp := span{c.Part.From, c.Part.To}
	want := map[string]string{ActStartWave: RolloutRunning, ActRollback: RolloutRolledBack, ActAbort: RolloutAborted, ActComplete: RolloutCompleted}[c.Action]
	if want == "" {
		return nil, nil, invalid("rollout action %q has no parts", c.Action)
	}
	if r.State != want || (c.Action == ActStartWave && r.Wave != c.Part.Wave) {
		return nil, nil, conflict("rollout %s is %s in wave %d: part %d-%d of %s does not apply", c.ID, r.State, r.Wave, sp.from, sp.to, c.Action)
	}
	switch c.Action {
	case ActStartWave:
		err = notifyWave(txn, env, &r, em, sp.and(waveSpan(r, r.Wave)))
	case ActRollback:
		err = rollBackDevices(txn, env, &r, em, sp)
	default:
		err = releaseDevices(txn, r, sp)
	}
	if err != nil {
		return nil, nil, err
	}
	r.UpdatedAt = env.Time
	if err := putJSON(txn, rolloutKey(c.ID), r); err != nil {
		return nil, nil, err
	}
	return r, nil, nil
}

func (p Processor) partDevices() int {
	if p.PartDevices > 0 {
		return p.PartDevices
	}
	return DefaultPartDevices
}

// Split cuts a rollout command that touches more than PartDevices devices into parts that the
// store proposes together as one Raft entry (the store's Splitter), and names the part whose
// result is the command's (when it succeeded; otherwise the first error of the parts is). It
// returns no parts for any other command. db is read for a transition's device count and wave,
// both fixed at creation; a first part re-checks the wave when it applies.
func (p Processor) Split(db *badger.DB, env command.Envelope) ([]command.Envelope, int, error) {
	n := p.partDevices()
	var bodies []any
	result := 0
	typ := command.TypeRolloutCreatePart
	switch env.Type &^ command.IgnoreIfUnknown {
	case command.TypeRolloutCreate:
		var c RolloutCreate
		if env.DecodePayload(&c) != nil || c.Part != nil || len(c.Devices) <= n {
			return nil, 0, nil
		}
		bodies, result = splitCreate(c, n)
	case command.TypeRolloutTransition:
		var c RolloutTransition
		if env.DecodePayload(&c) != nil || c.Part != nil {
			return nil, 0, nil
		}
		var err error
		if bodies, err = splitTransition(db, c, n); err != nil || len(bodies) < 2 {
			return nil, 0, err
		}
		result, typ = len(bodies)-1, command.TypeRolloutTransitionPart
	default:
		return nil, 0, nil
	}
	out := make([]command.Envelope, len(bodies))
	for i, b := range bodies {
		id := env.ID
		if id != "" {
			id += "/" + strconv.Itoa(i)
		}
		e, err := command.New(typ, id, env.Time, env.Actor, b)
		if err != nil {
			return nil, 0, err
		}
		out[i] = e
	}
	return out, result, nil
}

// splitCreate cuts a plan into plan parts, the commit part (the result) and discard parts.
func splitCreate(c RolloutCreate, n int) ([]any, int) {
	total := len(c.Devices)
	var bodies []any
	for from := 0; from < total; from += n {
		to := min(from+n, total)
		part := c
		part.Devices = c.Devices[from:to]
		part.Part = &Part{Stage: PartPlan, From: from, To: to, Total: total, First: from == 0, Last: to == total}
		bodies = append(bodies, part)
	}
	commit := c
	commit.Devices = nil
	commit.Part = &Part{Stage: PartCommit, Total: total}
	result := len(bodies)
	bodies = append(bodies, commit)
	for from := 0; from < total; from += n {
		to := min(from+n, total)
		bodies = append(bodies, RolloutCreate{ID: c.ID, Model: c.Model, Part: &Part{Stage: PartDiscard, From: from, To: to, Total: total, Last: to == total}})
	}
	return bodies, result
}

// splitTransition cuts a transition into parts of at most n devices: device updates into
// independent commands; a wave start, completion, abort or rollback into a first part that
// decides and parts that follow it over the rest of the device range.
func splitTransition(db *badger.DB, c RolloutTransition, n int) ([]any, error) {
	var bodies []any
	switch c.Action {
	case ActDevices:
		for from := 0; from < len(c.Devices); from += n {
			t := c
			to := min(from+n, len(c.Devices))
			t.Devices = c.Devices[from:to]
			// Each part is a whole decision of its own (its precondition, its devices).
			t.Part = &Part{First: true, Last: to == len(c.Devices)}
			bodies = append(bodies, t)
		}
		return bodies, nil
	case ActStartWave, ActRollback, ActAbort, ActComplete:
	default:
		return nil, nil
	}
	r, err := Reader{DB: db}.Rollout(c.ID)
	if err != nil {
		return nil, nil // the command itself answers
	}
	sp, wave := span{0, r.Total}, 0
	if c.Action == ActStartWave {
		wave = r.Wave + 1
		if c.FromState != "" {
			wave = c.FromWave + 1
		}
		sp = waveSpan(r, wave)
	}
	for from := sp.from; from < sp.to; from += n {
		to := min(from+n, sp.to)
		t := RolloutTransition{ID: c.ID, Action: c.Action}
		if from == sp.from {
			t = c
		}
		t.Part = &Part{From: from, To: to, Wave: wave, First: from == sp.from, Last: to == sp.to}
		bodies = append(bodies, t)
	}
	return bodies, nil
}
