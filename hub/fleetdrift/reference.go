package fleetdrift

import (
	"errors"
	"fmt"
	"time"

	"github.com/driftline/driftline/hub/state"
	"github.com/driftline/driftline/shared/contract"
	"github.com/driftline/driftline/shared/drift"
	"github.com/driftline/driftline/shared/outputs"
	"github.com/driftline/driftline/shared/profile"
)

// ModelKey names one model version.
type ModelKey struct {
	Model   string
	Version int
}

func (k ModelKey) String() string { return fmt.Sprintf("%s@%d", k.Model, k.Version) }

// reference is what a model version's device profiles are compared with: the reference profile
// of the first training dataset version that has one, and the drift options of its contract.
// Dataset versions are immutable, so a resolved reference never goes stale.
type reference struct {
	dataset string
	version int
	// output is the output reference's digest when this is a model version's output
	// reference (a Predictions service); dataset and version are then empty.
	output string
	prof   *profile.Profile
	opts   drift.Options
}

// view names the reference for the API.
func (r *reference) view() *RefView {
	if r.output != "" {
		return &RefView{Output: r.output}
	}
	return &RefView{Dataset: r.dataset, Version: r.version}
}

// refEntry caches one resolution; a failed one (err set) is retried after refRetry.
type refEntry struct {
	ref *reference
	err error
	at  time.Time
}

// refRetry is how long a failed reference resolution is remembered before it is tried again
// (a model version registered before its dataset's profile, a device racing its registration).
const refRetry = 10 * time.Second

// resolveReference reads a model version's trained_on dataset versions and returns the first
// that has a reference profile with its contract's drift options.
func resolveReference(reg Registry, key ModelKey) (*reference, error) {
	mv, err := reg.ModelVersion(key.Model, key.Version)
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", key, err)
	}
	for _, t := range mv.TrainedOn {
		dv, err := reg.DatasetVersion(t.Dataset, t.Version)
		if errors.Is(err, state.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("model %s: dataset %s@%d: %w", key, t.Dataset, t.Version, err)
		}
		if len(dv.Profile) == 0 {
			continue
		}
		p, err := profile.Decode(dv.Profile)
		if err != nil {
			return nil, fmt.Errorf("model %s: reference profile of %s@%d: %w", key, dv.Dataset, dv.Version, err)
		}
		opts := drift.Options{}
		if schema, err := contract.Parse(dv.Contract); err == nil {
			if o, err := drift.ContractOptions(schema); err == nil {
				opts = o
			}
		}
		return &reference{dataset: dv.Dataset, version: dv.Version, prof: p, opts: opts}, nil
	}
	return nil, fmt.Errorf("model %s: %w", key, ErrNoReference)
}

// resolveOutputReference reads a model version's output reference: the profile of its
// validation predictions, scored with the drift options of its output contract's prediction
// field, as the agent scores a window (shared/drift.ReferenceOptions).
func resolveOutputReference(reg Registry, key ModelKey) (*reference, error) {
	mv, err := reg.ModelVersion(key.Model, key.Version)
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", key, err)
	}
	if mv.Output == nil {
		return nil, fmt.Errorf("model %s: no output reference: %w", key, ErrNoReference)
	}
	b, err := reg.OutputReference(key.Model, key.Version)
	if errors.Is(err, state.ErrNotFound) {
		return nil, fmt.Errorf("model %s: no output reference: %w", key, ErrNoReference)
	}
	if err != nil {
		return nil, fmt.Errorf("model %s: output reference: %w", key, err)
	}
	dec, err := outputs.Decode(b)
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", key, err)
	}
	opts, ok, err := drift.ReferenceOptions(dec.Contract.PredictionSchema(), dec.Profile)
	if err != nil || !ok {
		return nil, fmt.Errorf("model %s: the output reference does not profile the prediction: %w", key, ErrNoReference)
	}
	return &reference{output: mv.Output.Digest, prof: dec.Profile, opts: opts}, nil
}

// fits reports whether a device profile has every column the reference compares, with the
// same kind (what drift.Compare requires).
func (r *reference) fits(p *profile.Profile) bool {
	names := r.opts.Only
	if len(names) == 0 {
		for _, c := range r.prof.Columns() {
			names = append(names, c.Name)
		}
	}
	for _, n := range names {
		rc, ok := r.prof.Column(n)
		if !ok {
			return false
		}
		pc, ok := p.Column(n)
		if !ok || pc.Kind() != rc.Kind() {
			return false
		}
	}
	return true
}
