package outputs

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/driftline/driftline/shared/contract"
	"github.com/driftline/driftline/shared/contract/rows"
	"github.com/driftline/driftline/shared/profile"
	"github.com/driftline/driftline/shared/reference"
)

// Reference is a model version's output reference: its output contract, the profile of its
// predictions on the validation set (calibrated like an input reference) and the performance
// those predictions scored against their labels. The hub builds it at registration and ships
// its JSON (by digest, like an input contract) to the agents that run the version.
type Reference struct {
	// Contract is the output contract in canonical form.
	Contract json.RawMessage `json:"contract"`
	// Profile is the encoded reference profile of ReferenceSchema's columns.
	Profile []byte `json:"profile"`
	// Performance is what the validation set scored; Metric the headline metric.
	Performance Performance `json:"performance"`
	Metric      string      `json:"metric"`
	// Rows and InvalidRows count the validation sample's rows and those left out.
	Rows        int64    `json:"rows"`
	InvalidRows int64    `json:"invalid_rows"`
	Notes       []string `json:"notes,omitempty"`
}

// ErrSample wraps every reason a validation sample cannot give an output reference.
var ErrSample = errors.New("output sample")

// Build computes the output reference of a validation sample (id, prediction and label
// columns, format f) under output contract c.
func Build(c *Contract, sample []byte, f rows.Format) (*Reference, error) {
	res, err := reference.Build(c.ReferenceSchema(), bytes.NewReader(sample), f, reference.Options{})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSample, err)
	}
	acc := NewAccumulator(c.Task)
	s := c.ReferenceSchema()
	pi, li := s.Index(c.Prediction), s.Index(c.Label)
	err = reference.Scan(bytes.NewReader(sample), s, f, func(out []contract.Value, vs []contract.Violation) error {
		if len(vs) == 0 {
			acc.Add(out[pi], out[li])
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSample, err)
	}
	if acc.Len() == 0 {
		return nil, fmt.Errorf("%w: no row has both a prediction and a label", ErrSample)
	}
	canon, err := json.Marshal(c.Schema)
	if err != nil {
		return nil, err
	}
	return &Reference{Contract: canon, Profile: res.Profile.Encode(), Performance: acc.Result(), Metric: c.Metric,
		Rows: res.Rows, InvalidRows: res.InvalidRows, Notes: res.Notes}, nil
}

// Encode returns the reference's JSON: the bytes whose digest names it.
func (r *Reference) Encode() ([]byte, error) { return json.Marshal(r) }

// Decoded is a Reference ready to use: its contract parsed, its profile decoded.
type Decoded struct {
	*Reference
	Contract *Contract
	Profile  *profile.Profile
}

// Decode parses an encoded Reference.
func Decode(b []byte) (*Decoded, error) {
	var r Reference
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("output reference: %w", err)
	}
	c, err := ParseContract(r.Contract)
	if err != nil {
		return nil, err
	}
	p, err := profile.Decode(r.Profile)
	if err != nil {
		return nil, fmt.Errorf("output reference profile: %w", err)
	}
	if _, ok := r.Performance.Value(r.Metric); !ok {
		return nil, fmt.Errorf("output reference: no %s value", r.Metric)
	}
	return &Decoded{Reference: &r, Contract: c, Profile: p}, nil
}
