package pipeline

import (
	"github.com/driftline/driftline/shared/contract"
	"github.com/driftline/driftline/shared/drift"
	"github.com/driftline/driftline/shared/profile"
)

// Default window bounds, used when neither the agent config nor the contract sets them.
const (
	DefaultWindowRows    = 10000
	DefaultWindowSeconds = 60
)

// DriftOptions returns the drift.Compare options a contract asks for against ref: only the
// contract's scored fields (drift.Scored) that ref profiles with the same kind are scored, with
// the per-field x-driftline.drift method and threshold. ok is false when no feature can be
// scored. An unknown method name is an error (Parse already refuses it, so it is a bug).
func DriftOptions(s *contract.Schema, ref *profile.Profile) (opts drift.Options, ok bool, err error) {
	all, err := drift.ContractOptions(s)
	if err != nil {
		return drift.Options{}, false, err
	}
	cols := drift.Columns(s)
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
				opts.Features = map[string]drift.FeatureOptions{}
			}
			opts.Features[name] = fo
		}
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
