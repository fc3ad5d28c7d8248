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

// DriftOptions returns the drift.Compare options a contract asks for against ref
// (drift.ReferenceOptions, which the hub's fleet view calls too).
func DriftOptions(s *contract.Schema, ref *profile.Profile) (opts drift.Options, ok bool, err error) {
	return drift.ReferenceOptions(s, ref)
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
