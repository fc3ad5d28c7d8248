package drift

import (
	"fmt"
	"iter"
	"math"

	"github.com/driftline/driftline/shared/contract"
	"github.com/driftline/driftline/shared/profile"
)

// CalibrateOptions tunes Calibrate.
type CalibrateOptions struct {
	// Factor is the number of standard deviations added to (distances) or taken from (p-values)
	// the mean window score; default DefaultFactor (3).
	Factor float64
	// Compare picks methods exactly as Compare will at check time; calibration itself ignores
	// any threshold already stored in the reference.
	Compare Options
}

// Calibrate scores every window against ref with the method Compare would use for each
// feature, and returns per feature the threshold mean + Factor*sd of those scores for a
// distance, or max(0, mean - Factor*sd) for a p-value (sd is the sample standard deviation).
// Features scored in fewer than two windows get no threshold. The windows are normally the
// reference itself cut into windows of the size the agent will use, so a threshold says "as
// different as the reference is from itself, plus Factor sd". ErrTooFewWindows with fewer than
// two windows.
func Calibrate(windows []*profile.Profile, ref *profile.Profile, opts CalibrateOptions) (map[string]profile.Threshold, error) {
	if len(windows) < 2 {
		return nil, fmt.Errorf("%w: got %d", ErrTooFewWindows, len(windows))
	}
	factor := opts.Factor
	if factor == 0 {
		factor = DefaultFactor
	}
	if math.IsNaN(factor) || math.IsInf(factor, 0) || factor < 0 {
		return nil, fmt.Errorf("%w: factor %v", ErrThreshold, factor)
	}
	co := opts.Compare
	co.IgnoreCalibration = true
	scores := map[string][]float64{}
	methods := map[string]Method{}
	for i, w := range windows {
		rep, err := Compare(ref, w, co)
		if err != nil {
			return nil, fmt.Errorf("calibration window %d: %w", i, err)
		}
		for name, fr := range rep.Features {
			if fr.Skipped != "" {
				continue
			}
			scores[name] = append(scores[name], fr.Score)
			methods[name] = fr.Method
		}
	}
	out := map[string]profile.Threshold{}
	for name, s := range scores {
		if len(s) < 2 {
			continue
		}
		mean, sd := meanSD(s)
		t := mean + factor*sd
		if methods[name].IsPValue() {
			t = max(0, mean-factor*sd)
		}
		out[name] = profile.Threshold{Method: string(methods[name]), Value: t}
	}
	return out, nil
}

// Apply stores calibrated thresholds in ref, where they travel with its encoding.
func Apply(ref *profile.Profile, th map[string]profile.Threshold) error {
	for name, t := range th {
		if err := ref.SetThreshold(name, t); err != nil {
			return fmt.Errorf("apply calibration: %w", err)
		}
	}
	return nil
}

// CalibrateRows profiles rows in one pass as the whole reference and as consecutive windows
// of windowRows rows (a trailing partial window is dropped), calibrates, and returns the
// reference profile with the thresholds stored in it.
func CalibrateRows(cols []profile.Column, rows iter.Seq[[]contract.Value], windowRows int, opts CalibrateOptions) (*profile.Profile, error) {
	if windowRows < 1 {
		return nil, fmt.Errorf("%w: window of %d rows", ErrTooFewWindows, windowRows)
	}
	ref, err := profile.New(cols)
	if err != nil {
		return nil, err
	}
	var windows []*profile.Profile
	var cur *profile.Profile
	n := 0
	for row := range rows {
		if cur == nil {
			if cur, err = profile.New(cols); err != nil {
				return nil, err
			}
		}
		if err := ref.Add(row); err != nil {
			return nil, fmt.Errorf("reference row %d: %w", n, err)
		}
		_ = cur.Add(row) // same row, same columns: cannot fail once ref.Add succeeded
		n++
		if cur.Rows() == uint64(windowRows) {
			windows = append(windows, cur)
			cur = nil
		}
	}
	th, err := Calibrate(windows, ref, opts)
	if err != nil {
		return nil, err
	}
	if err := Apply(ref, th); err != nil {
		return nil, err
	}
	return ref, nil
}

func meanSD(s []float64) (mean, sd float64) {
	for _, v := range s {
		mean += v
	}
	mean /= float64(len(s))
	var ss float64
	for _, v := range s {
		ss += (v - mean) * (v - mean)
	}
	return mean, math.Sqrt(ss / float64(len(s)-1))
}
