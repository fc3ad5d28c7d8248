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

// Window sources: where a bound of the window in force came from (the source label of
// MetricWindowRowsLimit and MetricWindowSecondsLimit, and the log line of a new contract).
const (
	WindowFromConfig   = "config"
	WindowFromContract = "contract"
	WindowFromDefault  = "default"
)

// ResolvedWindow is the window in force and where each of its bounds came from (a Window*
// source constant).
type ResolvedWindow struct {
	contract.Window
	RowsSource, SecondsSource string
}

// ResolveWindow resolves each bound of the window separately: the agent config's (cfg; zero
// means the operator did not set it), else the contract's x-driftline.window, else the default
// (DefaultWindowRows, DefaultWindowSeconds).
func ResolveWindow(cfg contract.Window, s *contract.Schema) ResolvedWindow {
	var cw contract.Window
	if s != nil {
		cw = s.Driftline.Window
	}
	w := ResolvedWindow{Window: cfg, RowsSource: WindowFromConfig, SecondsSource: WindowFromConfig}
	switch {
	case cfg.Rows > 0:
	case cw.Rows > 0:
		w.Rows, w.RowsSource = cw.Rows, WindowFromContract
	default:
		w.Rows, w.RowsSource = DefaultWindowRows, WindowFromDefault
	}
	switch {
	case cfg.Seconds > 0:
	case cw.Seconds > 0:
		w.Seconds, w.SecondsSource = cw.Seconds, WindowFromContract
	default:
		w.Seconds, w.SecondsSource = DefaultWindowSeconds, WindowFromDefault
	}
	return w
}

// EffectiveWindow is ResolveWindow's window without the sources.
func EffectiveWindow(cfg contract.Window, s *contract.Schema) contract.Window {
	return ResolveWindow(cfg, s).Window
}
