package pipeline

import (
	"fmt"

	"github.com/driftline/driftline/shared/contract"
	"github.com/driftline/driftline/shared/drift"
	"github.com/driftline/driftline/shared/profile"
)

// Default window bounds, used when neither the agent config nor the contract sets them.
const (
	DefaultWindowRows    = 10000
	DefaultWindowSeconds = 60
)

// Columns returns the profile columns of a contract: every field, numeric for number,
// integer, date and datetime, categorical for string and boolean. Profiles built by the agent,
// by `driftline-agent profile` and for a dataset's reference must use the same columns.
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

// DriftOptions returns the drift.Compare options a contract asks for against ref: only the
// contract's scored fields (see Scored) that ref profiles with the same kind are scored, with
// the per-field x-driftline.drift method and threshold. ok is false when no feature can be
// scored. An unknown method name is an error (Parse already refuses it, so it is a bug).
func DriftOptions(s *contract.Schema, ref *profile.Profile) (opts drift.Options, ok bool, err error) {
	cols := Columns(s)
	for i := range s.Fields {
		f := &s.Fields[i]
		if !Scored(f) {
			continue
		}
		rc, found := ref.Column(f.Name)
		if !found || rc.Kind() != cols[i].Kind {
			continue
		}
		opts.Only = append(opts.Only, f.Name)
		if f.Drift == nil || (f.Drift.Method == "" && f.Drift.Threshold == nil) {
			continue
		}
		var fo drift.FeatureOptions
		if f.Drift.Method != "" {
			m, err := drift.ParseMethod(f.Drift.Method)
			if err != nil {
				return drift.Options{}, false, fmt.Errorf("field %q: %w", f.Name, err)
			}
			fo.Method = m
		}
		fo.Threshold = f.Drift.Threshold
		if opts.Features == nil {
			opts.Features = map[string]drift.FeatureOptions{}
		}
		opts.Features[f.Name] = fo
	}
	return opts, len(opts.Only) > 0, nil
}

// EffectiveWindow resolves the window: the agent config's parts first (cfg, zero = unset),
// then the contract's x-driftline.window, then the defaults (10,000 rows, 60 s).
func EffectiveWindow(cfg contract.Window, s *contract.Schema) contract.Window {
	w := cfg
	if w.Rows <= 0 {
		w.Rows = s.Driftline.Window.Rows
	}
	if w.Seconds <= 0 {
		w.Seconds = s.Driftline.Window.Seconds
	}
	if w.Rows <= 0 {
		w.Rows = DefaultWindowRows
	}
	if w.Seconds <= 0 {
		w.Seconds = DefaultWindowSeconds
	}
	return w
}
