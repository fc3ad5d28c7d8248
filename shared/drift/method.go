package drift

import (
	"fmt"

	"github.com/driftline/driftline/shared/profile"
)

// Method names a drift test. Its string is the name used in contracts, flags and reports.
type Method string

// Drift methods. KS and ChiSquare score a p-value (drift when below the threshold); the others
// score a distance (drift when above it).
const (
	// KS is the two-sample Kolmogorov-Smirnov test; score is its p-value.
	KS Method = "ks"
	// Wasserstein is the W1 distance divided by the reference's standard deviation.
	Wasserstein Method = "wasserstein"
	// PSI is the population stability index over the reference's deciles.
	PSI Method = "psi"
	// ChiSquare is Pearson's chi-square goodness of fit of the current counts against the
	// reference shares; score is its p-value.
	ChiSquare Method = "chisquare"
	// JensenShannon is the Jensen-Shannon distance (natural log) of the two distributions.
	JensenShannon Method = "jensenshannon"
)

// Defaults, those of Evidently's data drift preset.
const (
	// DefaultSmallReference is the largest reference row count for which the p-value tests
	// (ks, chisquare) are the defaults; above it the distances are.
	DefaultSmallReference = 1000
	// DefaultDriftShare is the share of drifted features from which the dataset drifts.
	DefaultDriftShare = 0.5
	// DefaultFactor is the number of standard deviations calibration adds to the mean score.
	DefaultFactor = 3.0
	// DefaultMaxDistinctShare is the share of distinct values above which a categorical
	// reference column with more than profile.DefaultFrequentK distinct values is taken for an
	// identifier and not scored (Options.MaxDistinctShare).
	DefaultMaxDistinctShare = 0.5
)

// ParseMethod returns the Method named s, or an error wrapping ErrMethod.
func ParseMethod(s string) (Method, error) {
	switch m := Method(s); m {
	case KS, Wasserstein, PSI, ChiSquare, JensenShannon:
		return m, nil
	}
	return "", fmt.Errorf("%w: unknown method %q", ErrMethod, s)
}

// IsPValue reports whether the method's score is a p-value (drift when score < threshold)
// rather than a distance (drift when score > threshold).
func (m Method) IsPValue() bool { return m == KS || m == ChiSquare }

// DefaultThreshold returns the method's default threshold: 0.05 for the p-value tests, 0.1 for
// the distances.
func (m Method) DefaultThreshold() float64 {
	if m.IsPValue() {
		return 0.05
	}
	return 0.1
}

// applies reports whether the method can score a feature of kind k. Categorical features have
// no order, so ks and wasserstein do not apply; psi, chisquare and jensenshannon work on
// categories, and on the reference deciles of a numeric feature.
func (m Method) applies(k profile.Kind) bool {
	switch m {
	case KS, Wasserstein:
		return k == profile.Numeric
	case PSI, ChiSquare, JensenShannon:
		return true
	}
	return false
}

// defaultMethod is Evidently's choice by kind and reference size.
func defaultMethod(k profile.Kind, refRows, small uint64) Method {
	if k == profile.Numeric {
		if refRows <= small {
			return KS
		}
		return Wasserstein
	}
	if refRows <= small {
		return ChiSquare
	}
	return JensenShannon
}
