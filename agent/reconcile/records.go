package reconcile

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/driftline/driftline/agent/devicedb"
	"github.com/driftline/driftline/agent/modelstore"
	"github.com/driftline/driftline/shared/wire"
)

// modelRecord is what the agent remembers about one model beside MODELDIR: the state it last
// reported and what the active version brought (contract, profile). modelstore's links are the
// truth about which versions are on disk; the record never contradicts them because Active and
// Previous are read from modelstore at each report.
type modelRecord struct {
	State      wire.State `json:"state"`
	Target     int        `json:"target,omitempty"`
	LastError  string     `json:"last_error,omitempty"`
	RolloutID  string     `json:"rollout_id,omitempty"`
	BytesDone  int64      `json:"bytes_done,omitempty"`
	BytesTotal int64      `json:"bytes_total,omitempty"`
	Since      int64      `json:"since,omitempty"`

	// Active* describe the version current points at, as the desired state named it.
	ActiveVersion  int    `json:"active_version,omitempty"`
	ManifestDigest string `json:"manifest_digest,omitempty"`
	ContractDigest string `json:"contract_digest,omitempty"`
	ProfileDigest  string `json:"profile_digest,omitempty"`
	// OutputDigest names the active version's output reference (agent/outputs).
	OutputDigest   string `json:"output_digest,omitempty"`
	Dataset        string `json:"dataset,omitempty"`
	DatasetVersion int    `json:"dataset_version,omitempty"`

	// Current and Previous are the versions MODELDIR's links named when last read (0: none).
	// refreshLinks reads them after every change, so reports never wait on modelstore.
	Current  int `json:"current,omitempty"`
	Previous int `json:"previous,omitempty"`

	// Pins are the chunk-cache pin sets this model holds ("NAME@VERSION").
	Pins []string `json:"pins,omitempty"`
}

// Keys in the agent's own namespace (ns.Sub("agent")).
const (
	keyRev         = "rev"
	keyModelPrefix = "model/"
)

func pinName(name string, v int) string { return name + "@" + strconv.Itoa(v) }

// loadRecords reads every model record and the last desired revision acted on.
func (rc *Reconciler) loadRecords() error {
	b, err := rc.own.Get([]byte(keyRev))
	switch {
	case errors.Is(err, devicedb.ErrNotFound):
	case err != nil:
		return fmt.Errorf("load desired revision: %w", err)
	default:
		rc.lastRev, err = strconv.ParseUint(string(b), 10, 64)
		if err != nil {
			rc.log.Warn("damaged desired revision, acting on the next desired", "err", err)
			rc.lastRev = 0
		}
	}
	rc.trust.ActedOn(rc.lastRev)
	return rc.own.Iterate(false, func(k, v []byte) error {
		name, ok := cutPrefix(string(k), keyModelPrefix)
		if !ok {
			return nil
		}
		var r modelRecord
		if err := json.Unmarshal(v, &r); err != nil || !r.State.Valid() {
			rc.log.Warn("dropping damaged model record", "model", name, "err", err)
			return nil
		}
		// ActiveModels may already be called from other goroutines (the
		// pipeline) while Run starts: the map is written under the lock they read it under.
		rc.mu.Lock()
		rc.models[name] = &r
		rc.mu.Unlock()
		return nil
	})
}

func cutPrefix(s, p string) (string, bool) {
	if len(s) > len(p) && s[:len(p)] == p {
		return s[len(p):], true
	}
	return "", false
}

// saveRecord persists model name's record as it is now (deleted when there is none). The value
// is taken under rc.mu and written after rc.mu is released, so the readers (ActiveModels,
// ActiveNames, Reported: the pipeline on every reading, the heartbeat) never wait for a disk
// commit, which in fleet mode queues behind thousands of agents' commits. rc.saveMu orders the
// writes: each takes the value current when it runs, so the last write holds the last change.
func (rc *Reconciler) saveRecord(name string) error {
	rc.saveMu.Lock()
	defer rc.saveMu.Unlock()
	rc.mu.Lock()
	r, ok := rc.models[name]
	var b []byte
	var err error
	if ok {
		b, err = json.Marshal(r)
	}
	rc.mu.Unlock()
	if err != nil {
		return fmt.Errorf("encode model record %s: %w", name, err)
	}
	if rc.recordHeld != nil {
		rc.recordHeld(b)
	}
	if !ok {
		return rc.own.Delete([]byte(keyModelPrefix + name))
	}
	return rc.own.Set([]byte(keyModelPrefix+name), b)
}

// saveSoon persists model name's record: with write-behind on (SetWriteBehind: the agent's
// connected loop calls FlushRecords after each OnChange), later, so the pull does not wait for
// the commit; otherwise at once. What a state or the links change in a record is not needed to
// act correctly after a crash (a revision not yet acted on is acted on again, and Load reads
// MODELDIR's links again), so it may land after the pull went on; the pins a record names are
// written at once (saveRecord), since Load releases them from it, and every record is written
// before the revision is recorded as acted on.
func (rc *Reconciler) saveSoon(name string) {
	if !rc.writeBehind.Load() {
		if err := rc.saveRecord(name); err != nil {
			rc.log.Error("persist model record", "model", name, "err", err)
		}
		return
	}
	rc.mu.Lock()
	rc.dirty[name] = true
	rc.mu.Unlock()
	rc.changed()
}

// SetWriteBehind turns write-behind of the records' state and link changes on or off (see
// saveSoon). Whoever turns it on calls FlushRecords after each OnChange, and once after turning
// it off.
func (rc *Reconciler) SetWriteBehind(on bool) { rc.writeBehind.Store(on) }

// FlushRecords writes every record whose write saveSoon left for later. Safe for concurrent use.
func (rc *Reconciler) FlushRecords() { rc.flushRecords() }

// flushRecords writes every record marked dirty. flushMu is held from taking the marks to the
// last write, so a flush does not return while another has taken a record it has not yet
// written (Run's flush before saveRev would otherwise see nothing dirty and record the revision
// before the record is on disk).
func (rc *Reconciler) flushRecords() {
	rc.flushMu.Lock()
	defer rc.flushMu.Unlock()
	rc.mu.Lock()
	names := make([]string, 0, len(rc.dirty))
	for n := range rc.dirty {
		names = append(names, n)
	}
	clear(rc.dirty)
	rc.mu.Unlock()
	sort.Strings(names)
	for _, n := range names {
		if err := rc.saveRecord(n); err != nil {
			rc.log.Error("persist model record", "model", n, "err", err)
		}
	}
}

func (rc *Reconciler) saveRev(rev uint64) error {
	if err := rc.own.Set([]byte(keyRev), []byte(strconv.FormatUint(rev, 10))); err != nil {
		return fmt.Errorf("save desired revision: %w", err)
	}
	rc.lastRev = rev
	rc.trust.ActedOn(rev)
	return nil
}

// setState moves model name to st, persists the record and reports. mut, if set, edits the
// record first (under the lock).
func (rc *Reconciler) setState(name string, st wire.State, mut func(r *modelRecord)) {
	rc.mu.Lock()
	r := rc.models[name]
	if r == nil {
		r = &modelRecord{}
		rc.models[name] = r
	}
	if r.State != st {
		r.Since = time.Now().UnixMilli()
	}
	r.State = st
	if st != wire.StateDownloading {
		r.BytesDone, r.BytesTotal = 0, 0
	}
	if mut != nil {
		mut(r)
	}
	rc.mu.Unlock()
	rc.saveSoon(name)
	rc.changed()
}

// progress records download progress and reports it at most once a second.
func (rc *Reconciler) progress(name string, done, total int64) {
	rc.mu.Lock()
	r := rc.models[name]
	if r == nil {
		rc.mu.Unlock()
		return
	}
	r.BytesDone, r.BytesTotal = done, total
	due := time.Since(rc.lastProgress) >= time.Second || done == total
	if due {
		rc.lastProgress = time.Now()
	}
	rc.mu.Unlock()
	if due {
		rc.changed()
	}
}

// Reported returns the reported state's revision and models: every model's record, with the
// active and previous versions read from MODELDIR, at most wire.MaxModels by name. The agent
// fills in the rest (header, agent version, trust flags) and queues it.
func (rc *Reconciler) Reported() (rev uint64, models map[string]wire.ReportedModel) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	models = map[string]wire.ReportedModel{}
	names := make([]string, 0, len(rc.models))
	for n := range rc.models {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if len(models) == wire.MaxModels {
			break
		}
		r := rc.models[n]
		rm := wire.ReportedModel{State: r.State, Target: r.Target, LastError: truncate(r.LastError, wire.MaxTextLen),
			RolloutID: r.RolloutID, BytesDone: r.BytesDone, BytesTotal: r.BytesTotal, Since: r.Since}
		if rm.BytesTotal > 0 && rm.BytesDone > rm.BytesTotal {
			rm.BytesDone = rm.BytesTotal
		}
		if r.Current > 0 {
			v := r.Current
			rm.Active = &v
		}
		if r.Previous > 0 {
			v := r.Previous
			rm.Previous = &v
		}
		models[n] = rm
	}
	return rc.reportRev, models
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// adoptDisk makes sure every model on disk has a record (state lost, or a model directory an
// operator restored) and that records match what modelstore says is current.
func (rc *Reconciler) adoptDisk() error {
	names, err := rc.store.Models()
	if err != nil {
		return err
	}
	for _, n := range names {
		cur, err := rc.store.Current(n)
		if err != nil {
			continue
		}
		prev, prevErr := rc.store.Previous(n)
		rc.mu.Lock()
		r := rc.models[n]
		if r == nil {
			r = &modelRecord{State: wire.StateActive, Since: time.Now().UnixMilli()}
			rc.models[n] = r
		}
		r.Current = cur.Version
		if prevErr == nil {
			r.Previous = prev.Version
		} else {
			r.Previous = 0
		}
		if r.ActiveVersion != cur.Version || r.ManifestDigest != cur.ManifestDigest {
			// The record's assets belong to another version: forget them rather than serve
			// the wrong contract.
			r.ActiveVersion, r.ManifestDigest = cur.Version, cur.ManifestDigest
			r.ContractDigest, r.ProfileDigest, r.Dataset, r.DatasetVersion = "", "", "", 0
			r.OutputDigest = ""
		}
		rc.mu.Unlock()
		if err := rc.saveRecord(n); err != nil {
			return err
		}
	}
	return nil
}

// refreshLinks reads name's current and previous versions from MODELDIR into its record.
// Called by Run only (and Load before it), never under rc.mu (modelstore may be busy with a health
// check).
func (rc *Reconciler) refreshLinks(name string) {
	if modelstore.ValidName(name) != nil {
		return
	}
	cur, prev := 0, 0
	if v, err := rc.store.Current(name); err == nil {
		cur = v.Version
	} else if !errors.Is(err, modelstore.ErrNoModel) {
		rc.log.Warn("read current model", "model", name, "err", err)
	}
	if v, err := rc.store.Previous(name); err == nil {
		prev = v.Version
	}
	rc.mu.Lock()
	r := rc.models[name]
	if r != nil {
		r.Current, r.Previous = cur, prev
	}
	rc.mu.Unlock()
	if r != nil {
		rc.saveSoon(name)
	}
}
