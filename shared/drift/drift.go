// Package drift scores a window profile against a reference profile, from the profiles'
// sketches only (never raw reference rows), with Evidently's default tests: KS or normalised
// Wasserstein for numeric features, chi-square or Jensen-Shannon for categorical ones, PSI
// reported for every numeric feature. Thresholds are per feature: explicit, calibrated from the
// reference's own windows (Calibrate), or the method's default. See DESIGN.md for error bounds.
package drift

import (
	"fmt"
	"math"
	"slices"

	"github.com/driftline/driftline/shared/profile"
)

// FeatureOptions overrides the method and threshold of one feature. Zero values mean default.
type FeatureOptions struct {
	// Method replaces the default method ("" keeps it).
	Method Method `json:"method,omitempty"`
	// Threshold, when set, wins over a calibrated threshold and the method's default.
	Threshold *float64 `json:"threshold,omitempty"`
}

// Options tunes Compare. The zero value gives Evidently's defaults for every reference column.
type Options struct {
	// Features holds per-feature overrides, keyed by column name.
	Features map[string]FeatureOptions
	// Only restricts the comparison to these columns (all reference columns when empty).
	Only []string
	// DriftShare is the share of drifted features from which the dataset drifts (default 0.5).
	DriftShare float64
	// SmallReference is the reference row count up to which p-value tests are the defaults
	// (default 1,000).
	SmallReference uint64
	// IgnoreCalibration makes Compare ignore thresholds stored in the reference profile.
	IgnoreCalibration bool
}

// FeatureReport is the verdict on one feature. The JSON names are the public report's.
type FeatureReport struct {
	// Kind is "numeric" or "categorical".
	Kind string `json:"kind"`
	// Method is the test that decided.
	Method Method `json:"method"`
	// Score is the method's p-value or distance.
	Score float64 `json:"score"`
	// Threshold is the one applied (calibrated when Calibrated is true).
	Threshold float64 `json:"threshold"`
	// Calibrated says the threshold came from the reference profile's calibration.
	Calibrated bool `json:"calibrated,omitempty"`
	// Drift is score < threshold for p-value methods, score > threshold for distances.
	Drift bool `json:"drift"`
	// KS is the KS statistic D (numeric features).
	KS *float64 `json:"ks,omitempty"`
	// PSI is the population stability index over the reference deciles (numeric features).
	PSI *float64 `json:"psi,omitempty"`
	// Wasserstein is W1 divided by the reference's standard deviation (numeric features).
	Wasserstein *float64 `json:"wasserstein,omitempty"`
	// Skipped, when set, says why the feature was not scored (no values on one side); a
	// skipped feature does not count in the drift share.
	Skipped string `json:"skipped,omitempty"`
}

// Report is the verdict on one window.
type Report struct {
	// DatasetDrift is DriftShare >= ShareThreshold (false when no feature was scored).
	DatasetDrift bool `json:"dataset_drift"`
	// DriftShare is the share of scored features that drifted.
	DriftShare float64 `json:"drift_share"`
	// ShareThreshold is the share from which the dataset drifts.
	ShareThreshold float64 `json:"share_threshold"`
	// Drifted counts the drifted features.
	Drifted int `json:"drifted_features"`
	// Scored counts the features scored (not skipped).
	Scored int `json:"scored_features"`
	// Features maps column names to verdicts.
	Features map[string]FeatureReport `json:"features"`
}

// Compare scores cur against ref. Every reference column (or those in opts.Only) must exist
// in cur with the same kind (ErrMismatch). Methods and thresholds come from opts, then from
// thresholds calibrated into ref (when their method is the one used), then the defaults.
func Compare(ref, cur *profile.Profile, opts Options) (*Report, error) {
	if err := opts.check(ref); err != nil {
		return nil, err
	}
	share := opts.DriftShare
	if share == 0 {
		share = DefaultDriftShare
	}
	small := opts.SmallReference
	if small == 0 {
		small = DefaultSmallReference
	}
	rep := &Report{ShareThreshold: share, Features: map[string]FeatureReport{}}
	for i := range ref.Len() {
		rc := ref.At(i)
		if len(opts.Only) > 0 && !slices.Contains(opts.Only, rc.Name()) {
			continue
		}
		cc, ok := cur.Column(rc.Name())
		if !ok || cc.Kind() != rc.Kind() {
			return nil, fmt.Errorf("%w: feature %q missing or of another kind in the window", ErrMismatch, rc.Name())
		}
		fo := opts.Features[rc.Name()]
		m := fo.Method
		if m == "" {
			m = defaultMethod(rc.Kind(), ref.Rows(), small)
		}
		fr := scoreFeature(rc, cc, m)
		if fr.Skipped == "" && !finite(fr) {
			// Only reachable with values near the float64 limits, e.g. from a hostile profile;
			// JSON cannot carry an infinity, and no verdict is better than a wrong one.
			fr = FeatureReport{Kind: fr.Kind, Method: m, Skipped: "statistic not finite"}
		}
		if fr.Skipped == "" {
			fr.Threshold = m.DefaultThreshold()
			if t, ok := rc.Threshold(); ok && !opts.IgnoreCalibration && Method(t.Method) == m {
				fr.Threshold, fr.Calibrated = t.Value, true
			}
			if fo.Threshold != nil {
				fr.Threshold, fr.Calibrated = *fo.Threshold, false
			}
			if m.IsPValue() {
				fr.Drift = fr.Score < fr.Threshold
			} else {
				fr.Drift = fr.Score > fr.Threshold
			}
			rep.Scored++
			if fr.Drift {
				rep.Drifted++
			}
		}
		rep.Features[rc.Name()] = fr
	}
	if rep.Scored > 0 {
		rep.DriftShare = float64(rep.Drifted) / float64(rep.Scored)
		rep.DatasetDrift = rep.DriftShare >= share
	}
	return rep, nil
}

func (o Options) check(ref *profile.Profile) error {
	if math.IsNaN(o.DriftShare) || o.DriftShare < 0 || o.DriftShare > 1 {
		return fmt.Errorf("%w: drift share %v outside (0, 1]", ErrThreshold, o.DriftShare)
	}
	for _, name := range o.Only {
		if _, ok := ref.Column(name); !ok {
			return fmt.Errorf("%w: %q", ErrUnknownFeature, name)
		}
	}
	for name, fo := range o.Features {
		c, ok := ref.Column(name)
		if !ok {
			return fmt.Errorf("%w: %q", ErrUnknownFeature, name)
		}
		if fo.Method != "" {
			if _, err := ParseMethod(string(fo.Method)); err != nil {
				return fmt.Errorf("feature %q: %w", name, err)
			}
			if !fo.Method.applies(c.Kind()) {
				return fmt.Errorf("%w: %s on %s feature %q", ErrMethod, fo.Method, c.Kind(), name)
			}
		}
		if fo.Threshold != nil && (math.IsNaN(*fo.Threshold) || math.IsInf(*fo.Threshold, 0)) {
			return fmt.Errorf("%w: feature %q threshold %v", ErrThreshold, name, *fo.Threshold)
		}
	}
	return nil
}

// scoreFeature computes the method's score and, for numeric features, D, W1/sd and PSI.
func scoreFeature(rc, cc *profile.ColumnProfile, m Method) FeatureReport {
	fr := FeatureReport{Kind: rc.Kind().String(), Method: m}
	if rc.Count() == 0 || cc.Count() == 0 {
		fr.Skipped = "no values in the reference or the window"
		return fr
	}
	if rc.Kind() == profile.Categorical {
		r, c := categoryCounts(rc.Frequent(), cc.Frequent())
		switch m {
		case ChiSquare:
			_, fr.Score = chiSquareP(r, c)
		case JensenShannon:
			fr.Score = jensenShannon(r, c)
		case PSI:
			fr.Score = psi(normalise(r), normalise(c))
		}
		return fr
	}
	rcdf, ccdf := rc.Quantiles().CDF(), cc.Quantiles().CDF()
	d, w, p := numericStats(rcdf, ccdf, rc.StdDev())
	fr.KS, fr.Wasserstein, fr.PSI = &d, &w, &p
	switch m {
	case KS:
		fr.Score = ksPValue(d, rc.Count(), cc.Count())
	case Wasserstein:
		fr.Score = w
	case PSI:
		fr.Score = p
	case ChiSquare, JensenShannon:
		rs, cs := decileShares(rcdf, ccdf)
		r, c := sharesToCounts(rs, rc.Count()), sharesToCounts(cs, cc.Count())
		if m == ChiSquare {
			_, fr.Score = chiSquareP(r, c)
		} else {
			fr.Score = jensenShannon(r, c)
		}
	}
	return fr
}

func finite(fr FeatureReport) bool {
	ok := func(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }
	for _, p := range []*float64{fr.KS, fr.PSI, fr.Wasserstein} {
		if p != nil && !ok(*p) {
			return false
		}
	}
	return ok(fr.Score)
}

func normalise(c []float64) []float64 {
	var n float64
	for _, v := range c {
		n += v
	}
	out := make([]float64, len(c))
	for i, v := range c {
		out[i] = v / n
	}
	return out
}
