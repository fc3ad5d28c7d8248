// Package drift is the hub's fleet drift service: it receives the binary window profiles
// devices publish, merges them per model version and time window into a fleet profile, scores
// the fleet and each device against the reference profile of the version's training dataset,
// keeps a bounded time series, publishes PREFIX/fleet/drift/{model}, and serves
// GET /api/v1/drift and GET /api/v1/devices/{id}/drift. See DESIGN.md.
package drift

import (
	"github.com/driftline/driftline/shared/contract"
	driftstat "github.com/driftline/driftline/shared/drift"
	"github.com/driftline/driftline/shared/profile"
)

// Features returns the profile columns of a contract's feature fields, in field order, and for
// each column the index of its field in schema.Fields. Numbers, integers, dates and datetimes
// are numeric; strings and booleans categorical. Fields with role prediction or label are not
// profiled: drift is about the model's inputs.
func Features(s *contract.Schema) (cols []profile.Column, fieldIdx []int) {
	for i, f := range s.Fields {
		if f.Role != contract.RoleFeature {
			continue
		}
		kind := profile.Categorical
		switch f.Type {
		case contract.TypeNumber, contract.TypeInteger, contract.TypeDate, contract.TypeDatetime:
			kind = profile.Numeric
		}
		cols = append(cols, profile.Column{Name: f.Name, Kind: kind})
		fieldIdx = append(fieldIdx, i)
	}
	return cols, fieldIdx
}

// CompareOptions returns the drift options a contract asks for: per feature the method and
// threshold of x-driftline.drift, restricted to the feature fields. Everything the contract
// leaves out keeps the defaults of shared/drift.
func CompareOptions(s *contract.Schema) driftstat.Options {
	opts := driftstat.Options{Features: map[string]driftstat.FeatureOptions{}}
	for _, f := range s.Fields {
		if f.Role != contract.RoleFeature {
			continue
		}
		opts.Only = append(opts.Only, f.Name)
		if f.Drift == nil || (f.Drift.Method == "" && f.Drift.Threshold == nil) {
			continue
		}
		fo := driftstat.FeatureOptions{Method: driftstat.Method(f.Drift.Method)}
		if f.Drift.Threshold != nil {
			t := *f.Drift.Threshold
			fo.Threshold = &t
		}
		opts.Features[f.Name] = fo
	}
	return opts
}

// CalibrationWindows groups the features to calibrate by window size in rows: a field's own
// x-driftline.drift.calibrate wins over the schema's. An empty map means no calibration.
func CalibrationWindows(s *contract.Schema) map[int][]string {
	out := map[int][]string{}
	for _, f := range s.Fields {
		if f.Role != contract.RoleFeature {
			continue
		}
		rows := s.Driftline.Drift.Calibrate
		if f.Drift != nil && f.Drift.Calibrate > 0 {
			rows = f.Drift.Calibrate
		}
		if rows > 0 {
			out[rows] = append(out[rows], f.Name)
		}
	}
	return out
}
