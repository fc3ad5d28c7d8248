package drift

import (
	"fmt"

	"github.com/driftline/driftline/shared/contract"
	"github.com/driftline/driftline/shared/profile"
)

// The rules in this file decide how a data contract becomes a profile and a drift comparison.
// The agent's windows, `driftline-agent profile`, the hub's reference profiles and its fleet
// drift all call them, so a reference always has the columns of the windows compared with it
// and every side scores the same features the same way.

// Columns returns the profile columns of a contract: every field in order, numeric for number,
// integer, date and datetime, categorical for string and boolean.
func Columns(s *contract.Schema) []profile.Column {
	cols := make([]profile.Column, len(s.Fields))
	for i, f := range s.Fields {
		cols[i] = profile.Column{Name: f.Name, Kind: profile.Numeric}
		if f.Type == contract.TypeString || f.Type == contract.TypeBoolean {
			cols[i].Kind = profile.Categorical
		}
	}
	return cols
}

// Scored reports whether drift is computed for a field: features (role "feature") only, and of
// those, date and datetime fields only when their x-driftline.drift is set — time moves
// forward, so a timestamp column would drift in every window.
func Scored(f *contract.Field) bool {
	if f.Role != contract.RoleFeature {
		return false
	}
	if f.Type == contract.TypeDate || f.Type == contract.TypeDatetime {
		return f.Drift != nil
	}
	return true
}

// ContractOptions returns the Compare options a contract asks for: its scored fields (Scored),
// each with the method and threshold of its x-driftline.drift; what the contract leaves out
// keeps this package's defaults. A field with x-driftline.drift is scored even when its
// reference looks like an identifier (FeatureOptions.Always): the contract asked for it. An
// unknown method name is an error (contract.Parse already refuses it).
func ContractOptions(s *contract.Schema) (Options, error) {
	var opts Options
	for i := range s.Fields {
		f := &s.Fields[i]
		if !Scored(f) {
			continue
		}
		opts.Only = append(opts.Only, f.Name)
		if f.Drift == nil {
			continue
		}
		fo := FeatureOptions{Always: true}
		if f.Drift.Method != "" {
			m, err := ParseMethod(f.Drift.Method)
			if err != nil {
				return Options{}, fmt.Errorf("field %q: %w", f.Name, err)
			}
			fo.Method = m
		}
		if f.Drift.Threshold != nil {
			t := *f.Drift.Threshold
			fo.Threshold = &t
		}
		if opts.Features == nil {
			opts.Features = map[string]FeatureOptions{}
		}
		opts.Features[f.Name] = fo
	}
	return opts, nil
}

// CalibrationWindows groups the scored fields to calibrate by window size in rows: override
// (when > 0) wins, then a field's own x-driftline.drift.calibrate, then the schema's. An empty
// map means no calibration.
func CalibrationWindows(s *contract.Schema, override int) map[int][]string {
	out := map[int][]string{}
	for i := range s.Fields {
		f := &s.Fields[i]
		if !Scored(f) {
			continue
		}
		size := s.Driftline.Drift.Calibrate
		if f.Drift != nil && f.Drift.Calibrate > 0 {
			size = f.Drift.Calibrate
		}
		if override > 0 {
			size = override
		}
		if size > 0 {
			out[size] = append(out[size], f.Name)
		}
	}
	return out
}

// ReferenceOptions returns the drift.Compare options a contract asks for against ref: only the
// contract's scored fields (Scored) that ref profiles with the same kind are scored, with
// the per-field x-driftline.drift method and threshold. ok is false when no feature can be
// scored. An unknown method name is an error (Parse already refuses it, so it is a bug).
func ReferenceOptions(s *contract.Schema, ref *profile.Profile) (opts Options, ok bool, err error) {
	all, err := ContractOptions(s)
	if err != nil {
		return Options{}, false, err
	}
	cols := Columns(s)
	kinds := make(map[string]profile.Kind, len(cols))
	for _, c := range cols {
		kinds[c.Name] = c.Kind
	}
	for _, name := range all.Only {
		rc, found := ref.Column(name)
		if !found || rc.Kind() != kinds[name] {
			continue
		}
		opts.Only = append(opts.Only, name)
		if fo, ok := all.Features[name]; ok {
			if opts.Features == nil {
				opts.Features = map[string]FeatureOptions{}
			}
			opts.Features[name] = fo
		}
	}
	return opts, len(opts.Only) > 0, nil
}
