package state

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

// Model version outputs (SPEC section 10): an output reference (shared/outputs.Reference, JSON)
// is attached to a registered version and shipped to its devices by digest, like the training
// dataset's contract and profile. The bytes live under their own key; the version document
// carries an OutputSummary.

const pOutputRef = "fsm/mvo/" // model/%010d -> output reference bytes

// OutputSummary is what a model version's document says about its output reference.
type OutputSummary struct {
	Digest string `json:"digest"`
	// Task, Metric and Reference are the output contract's task and headline metric and what
	// the validation set scored; Labels how many labelled rows that rests on.
	Task      string  `json:"task"`
	Metric    string  `json:"metric"`
	Reference float64 `json:"reference"`
	Labels    int64   `json:"labels"`
	// Prediction names the prediction field.
	Prediction string `json:"prediction"`
}

// ModelVersionOutputSet attaches an output reference to a model version that is not approved
// yet (what a version is judged by cannot change under an approval). Payload of
// command.TypeModelVersionOutputSet.
type ModelVersionOutputSet struct {
	Model     string        `json:"model"`
	Version   int           `json:"version"`
	Reference []byte        `json:"reference"`
	Summary   OutputSummary `json:"summary"`
}

func modelVersionOutputSet(txn *badger.Txn, c ModelVersionOutputSet) (any, *auditNote, error) {
	mv, err := getModelVersion(txn, c.Model, c.Version)
	if err != nil {
		return nil, nil, err
	}
	if mv.Status != StatusRegistered {
		return nil, nil, conflict("model:%s@%d is %s: its output reference is fixed", c.Model, c.Version, mv.Status)
	}
	sum := sha256.Sum256(c.Reference)
	digest := "sha256:" + hex.EncodeToString(sum[:])
	if len(c.Reference) == 0 || c.Summary.Digest != digest {
		return nil, nil, invalid("output reference digest %q does not match its bytes (%s)", c.Summary.Digest, digest)
	}
	if err := txn.Set(versionKey(pOutputRef, c.Model, c.Version), c.Reference); err != nil {
		return nil, nil, err
	}
	if err := putJSON(txn, nameKey(pObject, digest), ObjectRef{Kind: ObjectOutput, Name: c.Model, Version: c.Version}); err != nil {
		return nil, nil, err
	}
	s := c.Summary
	mv.Output = &s
	if err := putJSON(txn, versionKey(pModelVersion, c.Model, c.Version), mv); err != nil {
		return nil, nil, err
	}
	return mv, &auditNote{"model.version.output", ModelNode(c.Model, c.Version), fmt.Sprintf("%s %s=%g on %d labels", digest, s.Metric, s.Reference, s.Labels)}, nil
}

// OutputReference returns the output reference bytes of a model version.
func (r Reader) OutputReference(model string, version int) ([]byte, error) {
	var out []byte
	err := r.DB.View(func(txn *badger.Txn) error {
		item, err := txn.Get(versionKey(pOutputRef, model, version))
		if err != nil {
			return err
		}
		out, err = item.ValueCopy(nil)
		return err
	})
	if err == badger.ErrKeyNotFound {
		return nil, notFound("output reference of model:%s@%d", model, version)
	}
	return out, err
}

// OutputHealth is what a device's output reports (prediction drift, performance) said about one
// model version. In a DeviceObservation the counts are what arrived since the last telemetry
// command (deltas); on a Device they are the latest windows' values.
type OutputHealth struct {
	Model   string `json:"model"`
	Version int    `json:"version"`
	// At is the end of the latest window reported, Unix ms.
	At int64 `json:"at"`
	// PredictionWindows counts prediction drift windows, PredictionDrifted those that drifted;
	// PredictionDrift is the latest window's verdict.
	PredictionWindows int64 `json:"prediction_windows"`
	PredictionDrifted int64 `json:"prediction_drifted"`
	PredictionDrift   bool  `json:"prediction_drift"`
	// Labels counts joined labels; RelativeSum is the sum over performance windows of relative
	// performance × labels (so RelativeSum / Labels is the label-weighted relative
	// performance); Relative and Metric are the latest window's.
	Labels      int64   `json:"labels"`
	RelativeSum float64 `json:"relative_sum"`
	Relative    float64 `json:"relative"`
	Metric      string  `json:"metric,omitempty"`
	Value       float64 `json:"value"`
}

// attachOutputs records one device's output news: on the device (latest values) and, as running
// totals, on the runs edge of the version they were observed on, where rollout gates read them
// (attributes prediction_windows, prediction_drift_windows, labels, relative_sum).
func attachOutputs(txn *badger.Txn, d *storedDevice, o OutputHealth) error {
	if o.Model == "" || o.Version <= 0 {
		return nil
	}
	cur := d.Outputs
	if cur == nil || cur.Model != o.Model || cur.Version != o.Version {
		cur = &OutputHealth{Model: o.Model, Version: o.Version}
	}
	cur.At = max(cur.At, o.At)
	cur.PredictionWindows += o.PredictionWindows
	cur.PredictionDrifted += o.PredictionDrifted
	if o.PredictionWindows > 0 {
		cur.PredictionDrift = o.PredictionDrift
	}
	cur.Labels += o.Labels
	cur.RelativeSum += o.RelativeSum
	if o.Labels > 0 {
		cur.Relative, cur.Metric, cur.Value = o.Relative, o.Metric, o.Value
	}
	d.Outputs = cur
	return updateRunsEdge(txn, d.ID, o.Model, o.Version, func(attr map[string]any) {
		add := func(k string, v float64) {
			was, _ := attr[k].(float64)
			attr[k] = was + v
		}
		add("prediction_windows", float64(o.PredictionWindows))
		add("prediction_drift_windows", float64(o.PredictionDrifted))
		add("labels", float64(o.Labels))
		add("relative_sum", o.RelativeSum)
		if o.Labels > 0 {
			attr["last_relative_performance"] = o.Relative
		}
	})
}
