package drift

import (
	"cmp"
	"fmt"
	"math"
	"slices"

	"gonum.org/v1/gonum/stat/distuv"

	"github.com/driftline/driftline/shared/profile"
)

// CalibrateOptions tunes calibration.
type CalibrateOptions struct {
	// Factor is the number of standard deviations added to the mean window statistic; default
	// DefaultFactor (3).
	Factor float64
	// Compare picks methods exactly as Compare will at check time; calibration itself ignores
	// any threshold already stored in the reference.
	Compare Options
}

// Calibration is what calibration learned for one feature.
type Calibration struct {
	// Feature is the column's name.
	Feature string
	// Threshold is the learned threshold, ready for profile.SetThreshold.
	Threshold profile.Threshold
	// Mean and SD are the mean and sample standard deviation of the windows' statistics.
	Mean, SD float64
	// Windows is the number of windows the feature was scored in.
	Windows int
	// Floor is the statistic's value at the method's default threshold for windows of this
	// size (mean over the windows); Floored says the threshold was raised to it.
	Floor   float64
	Floored bool
}

// Calibrator learns per-feature thresholds from windows of the reference scored one at a
// time: every method is calibrated on its statistic (KS D, the chi-square statistic, or the
// distance), and the threshold is max(mean + Factor x sd, floor), where floor is the statistic's
// value at the method's default threshold for the window. So a calibrated threshold means
// "Factor sd above what the reference's own windows show", drift is always statistic >
// threshold, and calibration never makes a method stricter than its default (with sd = 0 the
// bare mean would flag any window that differs at all). It keeps running sums (Welford), not
// the windows, so memory does not grow with their number. Not safe for concurrent use.
type Calibrator struct {
	ref     *profile.Profile
	opts    Options
	factor  float64
	windows int
	stats   map[string]*running
}

// running is Welford's running mean and variance of one feature's window statistics, plus the
// sum of the per-window floors.
type running struct {
	method   Method
	n        int
	mean, m2 float64
	floorSum float64
}

func (r *running) add(x, floor float64) {
	r.n++
	d := x - r.mean
	r.mean += d / float64(r.n)
	r.m2 += d * (x - r.mean)
	r.floorSum += floor
}

// NewCalibrator returns a Calibrator against ref. The factor must be finite and not negative
// (ErrThreshold); 0 means DefaultFactor.
func NewCalibrator(ref *profile.Profile, opts CalibrateOptions) (*Calibrator, error) {
	factor := opts.Factor
	if factor == 0 {
		factor = DefaultFactor
	}
	if math.IsNaN(factor) || math.IsInf(factor, 0) || factor < 0 {
		return nil, fmt.Errorf("%w: factor %v", ErrThreshold, factor)
	}
	co := opts.Compare
	co.IgnoreCalibration = true
	if err := co.check(ref); err != nil {
		return nil, err
	}
	return &Calibrator{ref: ref, opts: co, factor: factor, stats: map[string]*running{}}, nil
}

// Add scores one window against the reference and accumulates each scored feature's statistic.
// Features skipped in the window (no values, identifiers) or with a non-finite statistic (a
// category the reference lacks, impossible for windows cut from the reference) are left out.
func (c *Calibrator) Add(window *profile.Profile) error {
	rep, err := Compare(c.ref, window, c.opts)
	if err != nil {
		return fmt.Errorf("calibration window %d: %w", c.windows+1, err)
	}
	c.windows++
	for name, fr := range rep.Features {
		if fr.Skipped != "" || math.IsNaN(fr.stat) || math.IsInf(fr.stat, 0) {
			continue
		}
		rc, _ := c.ref.Column(name)
		wc, _ := window.Column(name)
		st := c.stats[name]
		if st == nil {
			st = &running{method: fr.Method}
			c.stats[name] = st
		}
		st.add(fr.stat, floor(fr, rc, wc))
	}
	return nil
}

// Windows returns the number of windows added.
func (c *Calibrator) Windows() int { return c.windows }

// Result returns the calibration of every feature scored in at least two windows, by name.
// ErrTooFewWindows with fewer than two windows.
func (c *Calibrator) Result() ([]Calibration, error) {
	if c.windows < 2 {
		return nil, fmt.Errorf("%w: got %d", ErrTooFewWindows, c.windows)
	}
	var out []Calibration
	for name, st := range c.stats {
		if st.n < 2 {
			continue
		}
		sd := math.Sqrt(st.m2 / float64(st.n-1))
		fl := st.floorSum / float64(st.n)
		t := st.mean + c.factor*sd
		cal := Calibration{Feature: name, Mean: st.mean, SD: sd, Windows: st.n, Floor: fl}
		if !(t >= fl) { // also catches an overflow to NaN
			t, cal.Floored = fl, true
		}
		cal.Threshold = profile.Threshold{Method: string(st.method), Value: t, OnStatistic: st.method.IsPValue()}
		out = append(out, cal)
	}
	slices.SortFunc(out, func(a, b Calibration) int { return cmp.Compare(a.Feature, b.Feature) })
	return out, nil
}

// floor returns the value of fr's statistic at its method's default threshold: the KS D whose
// p-value is 0.05 for these sample sizes, the chi-square statistic at p = 0.05 for these
// categories, the default distance otherwise.
func floor(fr FeatureReport, rc, wc *profile.ColumnProfile) float64 {
	alpha := fr.Method.DefaultThreshold()
	switch fr.Method {
	case KS:
		n, m := rc.Count(), wc.Count()
		lo, hi := 0.0, 1.0
		for range 60 { // ksPValue decreases in D: bisect to 1e-18
			mid := (lo + hi) / 2
			if ksPValue(mid, n, m) > alpha {
				lo = mid
			} else {
				hi = mid
			}
		}
		return hi
	case ChiSquare:
		if fr.df < 1 {
			return 0
		}
		return distuv.ChiSquared{K: float64(fr.df)}.Quantile(1 - alpha)
	}
	return alpha
}

// String describes the calibration for a person, e.g. in a dataset version's notes.
func (c Calibration) String() string {
	on := "distance"
	if Method(c.Threshold.Method).IsPValue() {
		on = "statistic"
	}
	s := fmt.Sprintf("calibration: %s threshold %s %s %.6g (mean %.6g, sd %.6g over %d windows)",
		c.Feature, c.Threshold.Method, on, c.Threshold.Value, c.Mean, c.SD, c.Windows)
	if c.Floored {
		s += "; raised to the method's default"
	}
	return s
}
