package state

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/dgraph-io/badger/v4"

	"github.com/driftline/driftline/hub/command"
)

// Samples of drifted windows (SPEC section 10). Devices send reservoir samples of drifted
// windows where the training dataset's contract allows collection; each is staged here under
// the training dataset version it extends, then the leader's collector (hub/samples) turns the
// staged samples of one dataset version into a candidate version: derived_from the training
// version, collected_on each contributing device, its rows kept as content-addressed chunks.

// EdgeCollectedOn links a candidate dataset version to a device it was collected on.
const EdgeCollectedOn = "collected_on"

// The drifted window between a device and the candidate sampled from it. CandidateCreate writes,
// in the same Raft entry that registers the candidate, one node window:DEVICE/MODEL@V/START per
// staged sample (START is the window's start, Unix ms), an edge window -observed_on-> device (the
// device that saw the drift, with the model version whose runs edge carries the drift summary)
// and candidate -sampled_from-> window. Walking down from the training dataset version thus reads
// dataset -> model -> device -> window -> candidate dataset -> the model trained on it.
const (
	KindWindow      = "window"
	EdgeObservedOn  = "observed_on"  // window -> device it was observed on
	EdgeSampledFrom = "sampled_from" // candidate dataset version -> drifted window its rows came from
)

// WindowNode names the drifted window of device on model@version that started at start (Unix ms).
func WindowNode(device, model string, version int, start int64) string {
	return fmt.Sprintf("window:%s/%s@%d/%d", device, model, version, start)
}

const pSample = "fsm/smp/" // DATASET@V/DEVICE/%020d window end/%010d window index -> StagedSample

// StagedSample is one device's sample of one drifted window, waiting for a candidate.
type StagedSample struct {
	Key            string `json:"key"`
	Device         string `json:"device"`
	Model          string `json:"model"`
	ModelVersion   int    `json:"model_version"`
	Dataset        string `json:"dataset"`
	DatasetVersion int    `json:"dataset_version"`
	WindowIndex    int64  `json:"window_index"`
	// WindowStart is absent from samples staged before the window node existed; WindowEnd
	// stands in for it then.
	WindowStart int64             `json:"window_start,omitempty"`
	WindowEnd   int64             `json:"window_end"`
	Reason      string            `json:"reason"`
	WindowRows  int64             `json:"window_rows"`
	Rows        []json.RawMessage `json:"rows"`
	InvalidRows []json.RawMessage `json:"invalid_rows,omitempty"`
	StagedAt    int64             `json:"staged_at"`
}

// SampleStage stages a sample. Payload of command.TypeSampleStage. A repeat (the agent's outbox
// sends at least once) is recognised by device and window and changes nothing.
type SampleStage struct {
	Sample StagedSample `json:"sample"`
}

// CandidateCreate registers a candidate dataset version from staged samples and removes them.
// Payload of command.TypeCandidateCreate.
type CandidateCreate struct {
	Version DatasetVersionCreate `json:"version"`
	// Devices the rows were collected on (collected_on edges).
	Devices []string `json:"devices"`
	// Staged are the keys of the samples the version holds.
	Staged []string `json:"staged"`
	// Model and ModelVersion are the model version whose drift made the samples.
	Model        string `json:"model"`
	ModelVersion int    `json:"model_version"`
	// Manifest is the canonical artifact manifest of the rows (JSONL), whose chunks a
	// ChunksPut stored first: the candidate's rows stay on the hub, ready to train on.
	Manifest []byte `json:"manifest"`
	// InvalidManifest is the manifest of the sampled invalid rows (as read), kept apart.
	InvalidManifest []byte `json:"invalid_manifest,omitempty"`
}

const (
	pCandidateRows    = "fsm/candm/" // dataset/%010d -> manifest of the candidate's rows
	pCandidateInvalid = "fsm/candi/" // dataset/%010d -> manifest of its sampled invalid rows
)

func sampleKey(s StagedSample) string {
	return fmt.Sprintf("%s%s@%d/%s/%020d/%010d", pSample, s.Dataset, s.DatasetVersion, s.Device, s.WindowEnd, s.WindowIndex)
}

func sampleStage(txn *badger.Txn, env command.Envelope, c SampleStage) (any, *auditNote, error) {
	s := c.Sample
	if !ValidName(s.Device) || !ValidName(s.Dataset) || s.DatasetVersion < 1 || len(s.Rows)+len(s.InvalidRows) == 0 {
		return nil, nil, invalid("a staged sample needs a device, a dataset version and rows")
	}
	if ok, err := exists(txn, versionKey(pDatasetVersion, s.Dataset, s.DatasetVersion)); err != nil || !ok {
		if err != nil {
			return nil, nil, err
		}
		return nil, nil, notFound("dataset:%s@%d", s.Dataset, s.DatasetVersion)
	}
	s.Key = sampleKey(s)
	if ok, err := exists(txn, []byte(s.Key)); err != nil || ok {
		return map[string]bool{"staged": false}, nil, err
	}
	s.StagedAt = env.Time
	if err := putJSON(txn, []byte(s.Key), s); err != nil {
		return nil, nil, err
	}
	return map[string]bool{"staged": true}, nil, nil
}

func candidateCreate(txn *badger.Txn, env command.Envelope, c CandidateCreate) (any, *auditNote, error) {
	if len(c.Staged) == 0 || len(c.Devices) == 0 {
		return nil, nil, invalid("a candidate needs staged samples and devices")
	}
	if len(c.Manifest) == 0 {
		return nil, nil, invalid("a candidate needs the manifest of its rows")
	}
	for _, k := range c.Staged {
		if !strings.HasPrefix(k, pSample) {
			return nil, nil, invalid("staged key %q", k)
		}
		if ok, err := exists(txn, []byte(k)); err != nil || !ok {
			if err != nil {
				return nil, nil, err
			}
			return nil, nil, conflict("staged sample %s is gone (already in a candidate)", k)
		}
	}
	res, note, err := datasetVersionCreate(txn, env, c.Version)
	if err != nil {
		return nil, nil, err
	}
	v := res.(DatasetVersion)
	node := DatasetNode(v.Dataset, v.Version)
	if err := txn.Set(versionKey(pCandidateRows, v.Dataset, v.Version), c.Manifest); err != nil {
		return nil, nil, err
	}
	if len(c.InvalidManifest) > 0 {
		if err := txn.Set(versionKey(pCandidateInvalid, v.Dataset, v.Version), c.InvalidManifest); err != nil {
			return nil, nil, err
		}
	}
	for _, d := range c.Devices {
		if err := putEdge(txn, LineageEdge{From: node, To: DeviceNode(d), Kind: EdgeCollectedOn, Since: env.Time,
			Attr: map[string]any{"model": ModelNode(c.Model, c.ModelVersion)}}); err != nil {
			return nil, nil, err
		}
	}
	for _, k := range c.Staged {
		if err := putWindow(txn, env, node, k); err != nil {
			return nil, nil, err
		}
		if err := txn.Delete([]byte(k)); err != nil {
			return nil, nil, err
		}
	}
	note.action = "dataset.candidate.create"
	note.detail = fmt.Sprintf("%d samples from %d devices after drift on %s", len(c.Staged), len(c.Devices), ModelNode(c.Model, c.ModelVersion))
	return v, note, nil
}

// putWindow writes the drifted window of the staged sample under key, observed_on its device
// and sampled_from by the candidate node cand.
func putWindow(txn *badger.Txn, env command.Envelope, cand, key string) error {
	var s StagedSample
	if err := getJSON(txn, []byte(key), &s); err != nil {
		return err
	}
	start := s.WindowStart
	if start == 0 {
		start = s.WindowEnd
	}
	model := ModelNode(s.Model, s.ModelVersion)
	w := WindowNode(s.Device, s.Model, s.ModelVersion, start)
	if err := putNode(txn, LineageNode{ID: w, Kind: KindWindow, Attr: map[string]any{
		"device": DeviceNode(s.Device), "model": model, "window_index": s.WindowIndex,
		"window_start": start, "window_end": s.WindowEnd, "reason": s.Reason, "window_rows": s.WindowRows,
	}}); err != nil {
		return err
	}
	if err := putEdge(txn, LineageEdge{From: w, To: DeviceNode(s.Device), Kind: EdgeObservedOn, Since: start, Until: s.WindowEnd,
		Attr: map[string]any{"model": model, "reason": s.Reason}}); err != nil {
		return err
	}
	return putEdge(txn, LineageEdge{From: cand, To: w, Kind: EdgeSampledFrom, Since: env.Time,
		Attr: map[string]any{"rows": len(s.Rows), "invalid_rows": len(s.InvalidRows)}})
}

// StagedSamples returns every staged sample, grouped by training dataset version in key order.
func (r Reader) StagedSamples() ([]StagedSample, error) {
	var out []StagedSample
	err := r.DB.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(pSample), PrefetchValues: true, PrefetchSize: 16})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var s StagedSample
			if err := it.Item().Value(func(b []byte) error { return json.Unmarshal(b, &s) }); err != nil {
				return err
			}
			out = append(out, s)
		}
		return nil
	})
	return out, err
}

// CandidateRows returns the manifest of a candidate dataset version's rows (JSONL), or with
// invalid of its sampled invalid rows; the chunks are read with Chunk.
func (r Reader) CandidateRows(dataset string, version int, invalid bool) ([]byte, error) {
	prefix := pCandidateRows
	if invalid {
		prefix = pCandidateInvalid
	}
	var out []byte
	err := r.DB.View(func(txn *badger.Txn) error {
		item, err := txn.Get(versionKey(prefix, dataset, version))
		if err != nil {
			return err
		}
		out, err = item.ValueCopy(nil)
		return err
	})
	if err == badger.ErrKeyNotFound {
		return nil, notFound("rows of %s (only candidate versions keep their rows)", DatasetNode(dataset, version))
	}
	return out, err
}
