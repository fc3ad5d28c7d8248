package pipeline

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"

	"github.com/driftline/driftline/shared/contract"
	"github.com/driftline/driftline/shared/contract/rows"
	"github.com/driftline/driftline/shared/wire"
)

// Row kinds. Inputs are the model's input rows (this package); predictions and labels go to the
// KindIngester (agent/outputs).
const (
	KindInputs      = "inputs"
	KindPredictions = "predictions"
	KindLabels      = "labels"
)

// ErrUnknownKind means a kind other than inputs, predictions or labels, or predictions and
// labels while no KindIngester is set.
var ErrUnknownKind = errors.New("pipeline: unknown row kind (inputs, predictions or labels)")

// ErrNoReference means predictions or labels arrived while the active model version has no
// output reference (the KindIngester returns it; POST /ingest answers 503).
var ErrNoReference = errors.New("the active model version has no output reference")

// KindIngester takes the rows of the other kinds: predictions and labels.
type KindIngester interface {
	// Ingest reads a stream of kind rows of format f to its end.
	Ingest(kind, source string, f rows.Format, r io.Reader) (Summary, error)
	// IngestPayload reads the rows of one data-topic payload (a JSON object or array).
	IngestPayload(kind, source string, payload []byte) (Summary, error)
}

// WindowSampler sees every valid row of a window and the window's verdict (agent/samples keeps
// a reservoir and sends it when the window drifted and the contract allows collection). It is
// called with the pipeline's lock held: it must not block.
type WindowSampler interface {
	Row(s *contract.Schema, values []contract.Value)
	// Invalid sees an invalid row as read (its cells are only valid during the call).
	Invalid(s *contract.Schema, row *contract.RawRow)
	Close(s *contract.Schema, hdr wire.Header, win wire.Window, ref wire.ModelRef, drifted bool, reason string, invalid int64)
}

// SetSampler hands every window's valid rows and verdict to ws. Call before rows arrive.
func (p *Pipeline) SetSampler(ws WindowSampler) {
	p.mu.Lock()
	p.sampler = ws
	p.mu.Unlock()
}

// SetKinds routes predictions and labels to k. Call before rows arrive.
func (p *Pipeline) SetKinds(k KindIngester) {
	p.mu.Lock()
	p.kinds = k
	p.mu.Unlock()
}

func (p *Pipeline) kindIngester() KindIngester {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.kinds
}

// IngestKind is Ingest for rows of kind ("" and "inputs" are the input rows).
func (p *Pipeline) IngestKind(kind, source string, f rows.Format, r io.Reader) (Summary, error) {
	switch kind {
	case "", KindInputs:
		return p.Ingest(source, f, r)
	case KindPredictions, KindLabels:
		if k := p.kindIngester(); k != nil {
			return k.Ingest(kind, source, f, r)
		}
	}
	return newSummary(), ErrUnknownKind
}

// envelope is a data-topic payload that names its kind: {"kind": "labels", "rows": [...]}.
type envelope struct {
	Kind string          `json:"kind"`
	Rows json.RawMessage `json:"rows"`
}

// IngestData checks one data-topic payload: rows of the input contract (a JSON object or an
// array of them), or an envelope {"kind": "inputs"|"predictions"|"labels", "rows": [...]}. An
// object is read as an envelope only when it has exactly the keys kind and rows, kind a string.
func (p *Pipeline) IngestData(source string, payload []byte) (Summary, error) {
	if kind, body, ok := splitEnvelope(payload); ok {
		switch kind {
		case KindInputs:
			return p.IngestPayload(source, body)
		case KindPredictions, KindLabels:
			if k := p.kindIngester(); k != nil {
				return k.IngestPayload(kind, source, body)
			}
		}
		return newSummary(), ErrUnknownKind
	}
	return p.IngestPayload(source, payload)
}

func splitEnvelope(payload []byte) (string, []byte, bool) {
	b := bytes.TrimSpace(payload)
	if len(b) == 0 || b[0] != '{' || !bytes.Contains(b, []byte(`"kind"`)) {
		return "", nil, false
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(b, &m) != nil || len(m) != 2 || m["kind"] == nil || m["rows"] == nil {
		return "", nil, false
	}
	var e envelope
	if json.Unmarshal(b, &e) != nil || e.Kind == "" {
		return "", nil, false
	}
	return e.Kind, e.Rows, true
}
