// Package drift scores a window profile against a reference profile, from the profiles'
// sketches only (never raw reference rows), with Evidently's default tests: KS or normalised
// Wasserstein for numeric features, chi-square or Jensen-Shannon for categorical ones, PSI
// reported for every numeric feature. Thresholds are per feature: explicit, calibrated from the
// reference's own windows (Calibrator), or the method's default. See DESIGN.md for error bounds.
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
	// Threshold, when set, wins over a calibrated threshold and the method's default. It
	// bounds the method's score as reported without calibration: a p-value for ks and
	// chisquare, a distance otherwise.
	Threshold *float64 `json:"threshold,omitempty"`
	// Always scores a categorical feature even when the reference says it is an identifier
	// (see Options.MaxDistinctShare); a contract sets it by asking for drift on the field.
	Always bool `json:"always,omitempty"`
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
	// MaxDistinctShare is the share of distinct values among a categorical reference column's
	// values above which the column is taken for an identifier (ids, timestamps stored as
	// strings) and not scored, once it has more distinct values than profile.DefaultFrequentK
	// (default DefaultMaxDistinctShare). FeatureOptions.Always overrides it per feature.
	MaxDistinctShare float64
}

// Score types: what FeatureReport.Score holds, which also gives the decision's direction.
const (
	// ScorePValue is a test's p-value (ks, chisquare with a default or explicit threshold):
	// drift when the score is below the threshold.
	ScorePValue = "p_value"
	// ScoreStatistic is a test's statistic (KS D, the chi-square statistic), reported when the
	// threshold was calibrated on it: drift when the score is above the threshold.
	ScoreStatistic = "statistic"
	// ScoreDistance is a distance (wasserstein, psi, jensenshannon): drift when above.
	ScoreDistance = "distance"
)

// Reasons a feature is skipped (FeatureReport.Skipped).
const (
	// SkipNoValues: the reference or the window has no non-null value of the feature.
	SkipNoValues = "no_values"
	// SkipHighCardinality: a categorical feature whose reference is mostly distinct values,
	// an identifier rather than a category (Options.MaxDistinctShare).
	SkipHighCardinality = "high_cardinality"
	// SkipNotFinite: a statistic overflowed (values near the float64 limits).
	SkipNotFinite = "not_finite"
)

// FeatureReport is the verdict on one feature. The JSON names are the public report's.
type FeatureReport struct {
	// Kind is "numeric" or "categorical".
	Kind string `json:"kind"`
	// Method is the test that decided.
	Method Method `json:"method"`
	// Score is what the threshold was applied to; ScoreType says which: the p-value of ks and
	// chisquare, their statistic (KS D, chi-square statistic) when the threshold was
	// calibrated, or a distance. A chi-square statistic that is infinite (a category the
	// reference never saw) is reported as math.MaxFloat64.
	Score float64 `json:"score"`
	// ScoreType is ScorePValue, ScoreStatistic or ScoreDistance ("" when skipped).
	ScoreType string `json:"score_type,omitempty"`
	// Threshold is the one applied (calibrated when Calibrated is true).
	Threshold float64 `json:"threshold"`
	// Calibrated says the threshold came from the reference profile's calibration.
	Calibrated bool `json:"calibrated,omitempty"`
	// Drift is score < threshold for a p-value, score > threshold for a statistic or distance.
	Drift bool `json:"drift"`
	// PValue is the p-value of ks and chisquare, whatever the score is.
	PValue *float64 `json:"p_value,omitempty"`
	// ChiSquare is the chi-square statistic (method chisquare; +Inf as math.MaxFloat64).
	ChiSquare *float64 `json:"chisquare,omitempty"`
	// KS is the KS statistic D (numeric features).
	KS *float64 `json:"ks,omitempty"`
	// PSI is the population stability index over the reference deciles (numeric features).
	PSI *float64 `json:"psi,omitempty"`
	// Wasserstein is W1 divided by the reference's standard deviation (numeric features).
	Wasserstein *float64 `json:"wasserstein,omitempty"`
	// Skipped, when set, says why the feature was not scored (SkipNoValues,
	// SkipHighCardinality, SkipNotFinite); a skipped feature does not count in the drift share.
	Skipped string `json:"skipped,omitempty"`

	// stat is what calibration learns: the statistic of a p-value method, else the distance.
	stat float64
	// df is chisquare's degrees of freedom.
	df int
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
		var fr FeatureReport
		if !fo.Always && identifier(rc, opts.MaxDistinctShare) {
			fr = FeatureReport{Kind: rc.Kind().String(), Method: m, Skipped: SkipHighCardinality}
		} else {
			fr = scoreFeature(rc, cc, m)
		}
		if fr.Skipped == "" && !finite(fr) {
			// Only reachable with values near the float64 limits, e.g. from a hostile profile;
			// JSON cannot carry an infinity, and no verdict is better than a wrong one.
			fr = FeatureReport{Kind: fr.Kind, Method: m, Skipped: SkipNotFinite}
		}
		if fr.Skipped == "" {
			decide(&fr, rc, fo, opts.IgnoreCalibration)
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

// decide picks the threshold of a scored feature (explicit, then calibrated for this method,
// then the method's default), the score it applies to, and the verdict.
func decide(fr *FeatureReport, rc *profile.ColumnProfile, fo FeatureOptions, ignoreCalibration bool) {
	m := fr.Method
	fr.Threshold = m.DefaultThreshold()
	switch t, ok := rc.Threshold(); {
	case fo.Threshold != nil:
		fr.Threshold = *fo.Threshold
	case ok && !ignoreCalibration && Method(t.Method) == m && (t.OnStatistic || !m.IsPValue()):
		// A p-value method's threshold counts only when calibrated on its statistic: the
		// p-value thresholds older profiles carry are the degenerate ones (docs/decisions.md).
		fr.Threshold, fr.Calibrated = t.Value, true
		if m.IsPValue() {
			fr.Score, fr.ScoreType = min(fr.stat, math.MaxFloat64), ScoreStatistic
		}
	}
	if fr.ScoreType == ScorePValue {
		fr.Drift = fr.Score < fr.Threshold
	} else {
		fr.Drift = fr.Score > fr.Threshold
	}
}

// identifier reports whether a categorical reference column looks like an identifier: more
// distinct values than the frequent-items summary counts exactly, and more than maxShare
// (default DefaultMaxDistinctShare) of its values distinct.
func identifier(rc *profile.ColumnProfile, maxShare float64) bool {
	if rc.Kind() != profile.Categorical {
		return false
	}
	if maxShare == 0 {
		maxShare = DefaultMaxDistinctShare
	}
	d := min(rc.Distinct(), rc.Count()) // the estimate may overshoot a column of unique values
	return d > profile.DefaultFrequentK && float64(d) > maxShare*float64(rc.Count())
}

func (o Options) check(ref *profile.Profile) error {
	if math.IsNaN(o.DriftShare) || o.DriftShare < 0 || o.DriftShare > 1 {
		return fmt.Errorf("%w: drift share %v outside (0, 1]", ErrThreshold, o.DriftShare)
	}
	if math.IsNaN(o.MaxDistinctShare) || o.MaxDistinctShare < 0 || o.MaxDistinctShare > 1 {
		return fmt.Errorf("%w: distinct share %v outside (0, 1]", ErrThreshold, o.MaxDistinctShare)
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

// scoreFeature computes the method's score (p-value or distance) and statistic and, for
// numeric features, D, W1/sd and PSI.
func scoreFeature(rc, cc *profile.ColumnProfile, m Method) FeatureReport {
	fr := FeatureReport{Kind: rc.Kind().String(), Method: m, ScoreType: ScoreDistance}
	if rc.Count() == 0 || cc.Count() == 0 {
		fr.Skipped = SkipNoValues
		fr.ScoreType = ""
		return fr
	}
	var r, c []float64 // category (or decile bin) counts for the categorical methods
	if rc.Kind() == profile.Categorical {
		r, c = categoryCounts(rc.Frequent(), cc.Frequent())
	} else {
		rcdf, ccdf := rc.Quantiles().CDF(), cc.Quantiles().CDF()
		d, w, p := numericStats(rcdf, ccdf, rc.StdDev())
		fr.KS, fr.Wasserstein, fr.PSI = &d, &w, &p
		switch m {
		case KS:
			pv := ksPValue(d, rc.Count(), cc.Count())
			fr.Score, fr.stat = pv, d
			fr.ScoreType, fr.PValue = ScorePValue, &pv
			return fr
		case Wasserstein:
			fr.Score, fr.stat = w, w
			return fr
		case PSI:
			fr.Score, fr.stat = p, p
			return fr
		}
		rs, cs := decileShares(rcdf, ccdf)
		r, c = sharesToCounts(rs, rc.Count()), sharesToCounts(cs, cc.Count())
	}
	switch m {
	case ChiSquare:
		stat, p := chiSquareP(r, c)
		fr.Score, fr.stat, fr.df = p, stat, categories(r, c)-1
		st := min(stat, math.MaxFloat64)
		fr.ScoreType, fr.PValue, fr.ChiSquare = ScorePValue, &p, &st
	case JensenShannon:
		fr.Score = jensenShannon(r, c)
		fr.stat = fr.Score
	case PSI:
		fr.Score = psi(normalise(r), normalise(c))
		fr.stat = fr.Score
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
