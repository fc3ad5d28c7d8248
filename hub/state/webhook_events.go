package state

import (
	"fmt"
	"maps"
	"slices"

	"github.com/dgraph-io/badger/v4"

	"github.com/driftline/driftline/hub/command"
)

// Events are derived from commands by the state machine: eventsBefore reads what a command may
// change before it runs, eventsAfter compares and queues events. Both do nothing (one key seek)
// when no webhook is registered.

// DriftEventData is the data of EventDriftDetected and EventDriftCleared.
type DriftEventData struct {
	Device     string            `json:"device"`
	Labels     map[string]string `json:"labels,omitempty"`
	Model      string            `json:"model"`
	Version    int               `json:"version"`
	WindowAt   int64             `json:"window_at"`
	Rows       int64             `json:"rows"`
	Invalid    int64             `json:"invalid"`
	DriftShare float64           `json:"drift_share"`
	Drifted    bool              `json:"dataset_drift"`
}

// GateEventData is the data of EventGateDecision.
type GateEventData struct {
	Rollout  string               `json:"rollout"`
	Model    string               `json:"model"`
	Version  int                  `json:"version"`
	Action   string               `json:"action"`
	Decision string               `json:"decision"` // "pass" or "fail"
	State    string               `json:"state"`
	Wave     int                  `json:"wave"`
	Waves    int                  `json:"waves"`
	Reason   string               `json:"reason,omitempty"`
	Gates    map[string]GateValue `json:"gates"`
}

// DatasetEventData is the data of EventDatasetVersion and EventDatasetCandidate. Delivery turns
// it into an OpenLineage RunEvent.
type DatasetEventData struct {
	Dataset        string       `json:"dataset"`
	Version        int          `json:"version"`
	Candidate      bool         `json:"candidate"`
	ContractDigest string       `json:"contract_digest,omitempty"`
	SampleSHA256   string       `json:"sample_sha256,omitempty"`
	SampleRows     int64        `json:"sample_rows"`
	SourceURI      string       `json:"source_uri,omitempty"`
	Parents        []VersionRef `json:"parents,omitempty"`
	CreatedBy      string       `json:"created_by"`
}

// eventsPre is what eventsBefore saw.
type eventsPre struct {
	hooks  []storedWebhook
	health map[string]*HealthSummary // device id -> health before a telemetry command
}

func emitsEvents(t command.Type) bool {
	switch t &^ command.IgnoreIfUnknown {
	case command.TypeDeviceTelemetry, command.TypeRolloutTransition, command.TypeRolloutTransitionPart, command.TypeDatasetVersionCreate, command.TypeCandidateCreate:
		return true
	}
	return false
}

// eventsBefore returns nil when env cannot cause an event or no webhook is registered.
func eventsBefore(txn *badger.Txn, env command.Envelope) (*eventsPre, error) {
	if !emitsEvents(env.Type) {
		return nil, nil
	}
	hooks, err := webhooks(txn)
	if err != nil || len(hooks) == 0 {
		return nil, err
	}
	pre := &eventsPre{hooks: hooks}
	if env.Type&^command.IgnoreIfUnknown == command.TypeDeviceTelemetry {
		var c DeviceTelemetry
		if err := env.DecodePayload(&c); err != nil {
			return nil, nil // dispatch reports the bad payload
		}
		pre.health = map[string]*HealthSummary{}
		for _, o := range c.Devices {
			if o.Health == nil {
				continue
			}
			if _, seen := pre.health[o.ID]; seen {
				continue
			}
			d, err := getDevice(txn, o.ID)
			if err != nil {
				pre.health[o.ID] = nil
				continue
			}
			pre.health[o.ID] = d.Health
		}
	}
	return pre, nil
}

// eventsAfter queues the events env caused, given what eventsBefore saw and the command's result.
func eventsAfter(txn *badger.Txn, env command.Envelope, pre *eventsPre, res any) error {
	if pre == nil {
		return nil
	}
	switch env.Type &^ command.IgnoreIfUnknown {
	case command.TypeDeviceTelemetry:
		return driftEvents(txn, env, pre)
	case command.TypeRolloutTransition, command.TypeRolloutTransitionPart:
		var c RolloutTransition
		r, ok := res.(Rollout)
		if !ok || env.DecodePayload(&c) != nil || c.Gates == nil {
			return nil
		}
		decision := ""
		switch c.Action {
		case ActStartWave, ActComplete:
			decision = "pass"
		case ActPause, ActRollback:
			decision = "fail"
		default:
			return nil
		}
		return publish(txn, env, pre.hooks, EventGateDecision, RolloutNode(r.ID), GateEventData{
			Rollout: r.ID, Model: r.Model, Version: r.Version, Action: c.Action, Decision: decision,
			State: r.State, Wave: r.Wave, Waves: r.Waves(), Reason: c.Reason, Gates: c.Gates,
		})
	case command.TypeDatasetVersionCreate, command.TypeCandidateCreate:
		v, ok := res.(DatasetVersion)
		if !ok {
			return nil
		}
		typ := EventDatasetVersion
		if IsCandidate(v) {
			typ = EventDatasetCandidate
		}
		return publish(txn, env, pre.hooks, typ, DatasetNode(v.Dataset, v.Version), DatasetEventData{
			Dataset: v.Dataset, Version: v.Version, Candidate: typ == EventDatasetCandidate, ContractDigest: v.ContractHash,
			SampleSHA256: v.SampleSHA256, SampleRows: v.SampleRows, SourceURI: v.SourceURI, Parents: v.Parents, CreatedBy: v.CreatedBy,
		})
	}
	return nil
}

// CandidateSourcePrefix starts the source URI of a dataset version collected from devices'
// samples: such a version is a candidate for the next training run.
const CandidateSourcePrefix = "driftline-samples:"

// IsCandidate reports whether a dataset version was collected from edge samples.
func IsCandidate(v DatasetVersion) bool {
	return len(v.SourceURI) >= len(CandidateSourcePrefix) && v.SourceURI[:len(CandidateSourcePrefix)] == CandidateSourcePrefix
}

// driftEvents compares each reporting device's health before and after the telemetry command:
// a window that drifts after one that did not (or after another model version's) is "detected",
// one that does not after one that did is "cleared". Parts of the same window that add drift
// count as detected once.
func driftEvents(txn *badger.Txn, env command.Envelope, pre *eventsPre) error {
	for id, before := range sortedHealth(pre.health) {
		d, err := getDevice(txn, id)
		if err != nil {
			continue // deleted
		}
		after := d.Health
		if after == nil || after.Model == "" {
			continue
		}
		was := before != nil && before.Model == after.Model && before.Version == after.Version && before.DatasetDrift
		typ := ""
		switch {
		case after.DatasetDrift && !was:
			typ = EventDriftDetected
		case !after.DatasetDrift && was && before.At != after.At:
			typ = EventDriftCleared
		default:
			continue
		}
		data := DriftEventData{Device: id, Labels: d.Labels, Model: after.Model, Version: after.Version, WindowAt: after.At,
			Rows: after.Rows, Invalid: after.Invalid, DriftShare: after.DriftShare, Drifted: after.DatasetDrift}
		if err := publish(txn, env, pre.hooks, typ, DeviceNode(id), data); err != nil {
			return fmt.Errorf("drift event for %s: %w", id, err)
		}
	}
	return nil
}

// sortedHealth iterates m in key order (Apply must be deterministic: event numbers follow it).
func sortedHealth(m map[string]*HealthSummary) func(func(string, *HealthSummary) bool) {
	return func(yield func(string, *HealthSummary) bool) {
		for _, k := range slices.Sorted(maps.Keys(m)) {
			if !yield(k, m[k]) {
				return
			}
		}
	}
}
