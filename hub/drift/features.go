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

// The rules below are the agent's (agent/pipeline Columns, Scored, DriftOptions): a reference
// the hub builds must have the columns of the window profiles agents build, and the hub must
// score the fleet as agents score their windows. features_test.go checks they agree.

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

// Scored reports whether drift is computed for a field: features only (not predictions or
// labels), and date or datetime features only when their x-driftline.drift is set (time moves
// forward, so a timestamp would drift in every window).
func Scored(f *contract.Field) bool {
	if f.Role != contract.RoleFeature {
		return false
	}
	if f.Type == contract.TypeDate || f.Type == contract.TypeDatetime {
		return f.Drift != nil
	}
	return true
}

// CompareOptions returns the drift options a contract asks for: its scored fields, each with
// the method and threshold of its x-driftline.drift. What the contract leaves out keeps the
// defaults of shared/drift.
func CompareOptions(s *contract.Schema) driftstat.Options {
	var opts driftstat.Options
	for i := range s.Fields {
		f := &s.Fields[i]
		if !Scored(f) {
			continue
		}
		opts.Only = append(opts.Only, f.Name)
		if f.Drift == nil || (f.Drift.Method == "" && f.Drift.Threshold == nil) {
			continue
		}
		fo := driftstat.FeatureOptions{Method: driftstat.Method(f.Drift.Method)} // Parse checked the name
		if f.Drift.Threshold != nil {
			t := *f.Drift.Threshold
			fo.Threshold = &t
		}
		if opts.Features == nil {
			opts.Features = map[string]driftstat.FeatureOptions{}
		}
		opts.Features[f.Name] = fo
	}
	return opts
}

// CalibrationWindows groups the scored fields to calibrate by window size in rows: a field's
// own x-driftline.drift.calibrate wins over the schema's. An empty map means no calibration.
func CalibrationWindows(s *contract.Schema) map[int][]string {
	out := map[int][]string{}
	for i := range s.Fields {
		f := &s.Fields[i]
		if !Scored(f) {
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
