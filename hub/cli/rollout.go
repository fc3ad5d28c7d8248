package cli

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// RolloutRequest is the body of POST /api/v1/rollouts (SPEC section 5).
type RolloutRequest struct {
	Model                string        `json:"model"`
	Version              int           `json:"version"`
	Selector             string        `json:"selector"`
	Waves                []float64     `json:"waves,omitempty"`
	BakeSeconds          int           `json:"bake_seconds"`
	Gates                *RolloutGates `json:"gates,omitempty"`
	OnGateFailure        string        `json:"on_gate_failure,omitempty"`
	DeviceTimeoutSeconds int           `json:"device_timeout_seconds,omitempty"`
}

// RolloutGates are a rollout's health gates; a nil gate is not checked.
type RolloutGates struct {
	MaxFailureRate *float64 `json:"max_failure_rate,omitempty"`
	MaxDriftShare  *float64 `json:"max_drift_share,omitempty"`
	MaxInvalidRate *float64 `json:"max_invalid_rate,omitempty"`
	// MaxPredictionDriftShare, MinPerformance and MinPerformanceLabels watch the outputs.
	MaxPredictionDriftShare *float64 `json:"max_prediction_drift_share,omitempty"`
	MinPerformance          *float64 `json:"min_performance,omitempty"`
	MinPerformanceLabels    int64    `json:"min_performance_labels,omitempty"`
}

// rolloutView is the part of a rollout the human output reads; -o json prints the whole answer.
type rolloutView struct {
	ID      string         `json:"id"`
	State   string         `json:"state"`
	Model   string         `json:"model"`
	Version int            `json:"version"`
	Wave    int            `json:"wave"`
	Reason  string         `json:"reason"`
	Devices map[string]int `json:"devices"`
	Gates   map[string]any `json:"gates"`
}

// terminalRolloutStates are the states after which a rollout never changes again.
var terminalRolloutStates = map[string]bool{"completed": true, "done": true, "aborted": true, "rolled_back": true, "failed": true}

func (a *app) rolloutCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "rollout", Short: "Roll a model version out to the fleet in waves"}
	cmd.AddCommand(a.rolloutCreate(), a.rolloutStatus())
	for _, act := range []struct{ name, short string }{
		{"pause", "Pause a rollout"}, {"resume", "Resume a paused rollout"},
		{"abort", "Abort a rollout (devices keep what they run)"}, {"rollback", "Roll every device of a rollout back to its previous version"},
	} {
		cmd.AddCommand(a.rolloutAction(act.name, act.short))
	}
	return cmd
}

func (a *app) rolloutCreate() *cobra.Command {
	var req RolloutRequest
	var waves string
	var bake, timeout time.Duration
	var failRate, driftShare, invalidRate, predDrift, minPerf float64
	var minLabels int64
	cmd := &cobra.Command{
		Use:   "create --model M --version V [--selector S] [--waves 1,10,50,100]",
		Short: "Start a rollout",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			if req.Model == "" || req.Version < 1 {
				return usagef("rollout create needs --model and --version")
			}
			for _, w := range splitURLs(waves) {
				f, err := strconv.ParseFloat(w, 64)
				if err != nil || f <= 0 {
					return usagef("--waves %q: want positive numbers, e.g. 1,10,50,100", waves)
				}
				req.Waves = append(req.Waves, f)
			}
			req.BakeSeconds = int(bake / time.Second)
			req.DeviceTimeoutSeconds = int(timeout / time.Second)
			if req.OnGateFailure != "" && req.OnGateFailure != "pause" && req.OnGateFailure != "rollback" {
				return usagef("--on-gate-failure %q: want pause or rollback", req.OnGateFailure)
			}
			g := &RolloutGates{}
			fl := cmd.Flags()
			if fl.Changed("max-failure-rate") {
				g.MaxFailureRate = &failRate
			}
			if fl.Changed("max-drift-share") {
				g.MaxDriftShare = &driftShare
			}
			if fl.Changed("max-invalid-rate") {
				g.MaxInvalidRate = &invalidRate
			}
			if fl.Changed("max-prediction-drift-share") {
				g.MaxPredictionDriftShare = &predDrift
			}
			if fl.Changed("min-performance") {
				g.MinPerformance = &minPerf
			}
			g.MinPerformanceLabels = minLabels
			if *g != (RolloutGates{}) {
				req.Gates = g
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			var r rolloutView
			raw, err := c.JSON(a.ctx, http.MethodPost, "/api/v1/rollouts", nil, req, &r)
			if err != nil {
				return err
			}
			if a.jsonOut() {
				return printRaw(a.stdout, raw)
			}
			_, err = fmt.Fprintf(a.stdout, "rollout %s: %s\n", r.ID, r.State)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&req.Model, "model", "", "model name")
	f.IntVar(&req.Version, "version", 0, "approved model version to roll out")
	f.StringVar(&req.Selector, "selector", "", "devices by labels, e.g. site=berlin,tier=edge (empty: every device)")
	f.StringVar(&waves, "waves", "", "wave sizes in percent of the selected devices, e.g. 1,10,50,100")
	f.DurationVar(&bake, "bake", 5*time.Minute, "how long each wave bakes before the next starts, e.g. 10m")
	f.DurationVar(&timeout, "device-timeout", 0, "after this, an offline device counts against its wave")
	f.Float64Var(&failRate, "max-failure-rate", 0, "gate: failed activations / devices in the wave")
	f.Float64Var(&driftShare, "max-drift-share", 0, "gate: share of the wave's devices reporting dataset drift")
	f.Float64Var(&invalidRate, "max-invalid-rate", 0, "gate: invalid rows / rows on the wave's devices")
	f.Float64Var(&predDrift, "max-prediction-drift-share", 0, "gate: share of the wave's devices whose predictions drift from the version's output reference")
	f.Float64Var(&minPerf, "min-performance", 0, "gate: floor on performance relative to the version's reference metric (1 = as good)")
	f.Int64Var(&minLabels, "min-performance-labels", 0, "joined labels min-performance needs before it decides (hub default 100)")
	f.StringVar(&req.OnGateFailure, "on-gate-failure", "", "pause (the hub's default) or rollback")
	return cmd
}

func (a *app) rolloutStatus() *cobra.Command {
	var watch bool
	var every time.Duration
	cmd := &cobra.Command{
		Use:   "status [ID] [--watch]",
		Short: "List rollouts, or show one (--watch: until it ends)",
		Args:  rangeArgs(0, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				if watch {
					return usagef("--watch needs a rollout ID")
				}
				return listTable(a, "/api/v1/rollouts", nil, []string{"ID", "MODEL", "STATE", "WAVE", "DEVICES"},
					func(r rolloutView) []string {
						return []string{r.ID, fmt.Sprintf("%s@%d", r.Model, r.Version), r.State, strconv.Itoa(r.Wave), labels(r.Devices)}
					})
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			path := "/api/v1/rollouts/" + seg(args[0])
			var prog *progress
			if watch {
				prog = newProgress(a.stderr, "rollout "+args[0], 0)
			}
			for {
				var r rolloutView
				raw, err := c.JSON(a.ctx, http.MethodGet, path, nil, nil, &r)
				if err != nil {
					return err
				}
				if !watch || terminalRolloutStates[r.State] {
					if prog != nil {
						prog.status(rolloutLine(r))
						fmt.Fprintln(a.stderr)
					}
					if a.jsonOut() {
						return printRaw(a.stdout, raw)
					}
					return showRollout(a, r)
				}
				if prog != nil {
					prog.status(rolloutLine(r))
				} else if !a.jsonOut() {
					fmt.Fprintf(a.stderr, "%s %s\n", time.Now().UTC().Format(time.TimeOnly), rolloutLine(r))
				}
				select {
				case <-a.ctx.Done():
					return fmt.Errorf("%w: stopped watching: %w", ErrUnavailable, a.ctx.Err())
				case <-time.After(every):
				}
			}
		},
	}
	cmd.Flags().BoolVarP(&watch, "watch", "w", false, "poll until the rollout completes, is aborted or rolled back")
	cmd.Flags().DurationVar(&every, "interval", 2*time.Second, "poll interval for --watch")
	return cmd
}

// rolloutLine is one line of progress: state, wave and devices by state.
func rolloutLine(r rolloutView) string {
	s := fmt.Sprintf("%s wave %d devices %s", r.State, r.Wave, labels(r.Devices))
	if r.Reason != "" {
		s += " (" + r.Reason + ")"
	}
	return s
}

func showRollout(a *app, r rolloutView) error {
	if err := fields(a.stdout, "id", r.ID, "model", fmt.Sprintf("%s@%d", r.Model, r.Version), "state", r.State,
		"wave", strconv.Itoa(r.Wave), "reason", dash(r.Reason), "devices", labels(r.Devices)); err != nil {
		return err
	}
	if len(r.Gates) == 0 {
		return nil
	}
	names := make([]string, 0, len(r.Gates))
	for n := range r.Gates {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprintln(a.stdout)
	t := newTable(a.stdout, "GATE", "VALUE", "THRESHOLD")
	for _, n := range names {
		var g struct {
			Value     *float64 `json:"value"`
			Threshold *float64 `json:"threshold"`
		}
		b, _ := json.Marshal(r.Gates[n])
		_ = json.Unmarshal(b, &g)
		t.row(n, fnum(g.Value), fnum(g.Threshold))
	}
	return t.flush()
}

func fnum(f *float64) string {
	if f == nil {
		return "-"
	}
	return strconv.FormatFloat(*f, 'g', 4, 64)
}

func (a *app) rolloutAction(action, short string) *cobra.Command {
	return &cobra.Command{
		Use: action + " ID", Short: short, Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			var r rolloutView
			raw, err := c.JSON(a.ctx, http.MethodPost, "/api/v1/rollouts/"+seg(args[0])+"/"+action, nil, nil, &r)
			if err != nil {
				return err
			}
			if a.jsonOut() {
				return printRaw(a.stdout, raw)
			}
			_, err = fmt.Fprintf(a.stdout, "rollout %s: %s\n", args[0], strings.TrimSpace(dash(r.State)))
			return err
		},
	}
}
