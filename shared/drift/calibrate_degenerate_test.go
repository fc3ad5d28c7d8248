package drift

import (
	"math/rand/v2"
	"testing"

	"github.com/driftline/driftline/shared/contract"
	"github.com/driftline/driftline/shared/profile"
)

// rowsOf profiles n rows made by gen(i) for the two columns temp and mode.
func rowsOf(t *testing.T, n int, gen func(i int) (float64, string)) *profile.Profile {
	t.Helper()
	p, err := profile.New(twoCols)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		x, m := gen(i)
		if err := p.Add([]contract.Value{{Kind: contract.KindNumber, Num: x}, {Kind: contract.KindString, Str: m}}); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// calibrated calibrates ref on windows and stores the thresholds in it.
func calibrated(t *testing.T, ref *profile.Profile, windows []*profile.Profile) *profile.Profile {
	t.Helper()
	th, err := Calibrate(windows, ref, CalibrateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := Apply(ref, th); err != nil {
		t.Fatal(err)
	}
	return ref
}

// TestCalibratePValueMethodsDetectShift: on a small reference (ks and chisquare are the
// defaults), a calibrated threshold must still flag a gross shift. Calibrating p-values as
// max(0, mean - 3 sd) gave 0, and no p-value is below 0.
func TestCalibratePValueMethodsDetectShift(t *testing.T) {
	modes := []string{"a", "b", "c"}
	iid := func(seed uint64, shift float64, mode func(r *rand.Rand) string) func(int) (float64, string) {
		r := rand.New(rand.NewPCG(seed, 3))
		return func(int) (float64, string) { return r.NormFloat64() + shift, mode(r) }
	}
	uniform := func(r *rand.Rand) string { return modes[r.IntN(3)] }
	ref := rowsOf(t, 800, iid(1, 0, uniform))
	var windows []*profile.Profile
	for w := range 8 {
		windows = append(windows, rowsOf(t, 100, iid(100+uint64(w), 0, uniform)))
	}
	ref = calibrated(t, ref, windows)
	shifted := rowsOf(t, 100, iid(7, 3, func(*rand.Rand) string { return "a" }))
	rep, err := Compare(ref, shifted, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"temp", "mode"} {
		fr := rep.Features[name]
		if !fr.Calibrated || !fr.Drift {
			t.Errorf("%s: a gross shift must drift under the calibrated threshold: %+v", name, fr)
		}
		if fr.ScoreType != ScoreStatistic || fr.Score <= fr.Threshold || fr.PValue == nil {
			t.Errorf("%s: a calibrated p-value method reports its statistic above the threshold, and the p-value: %+v", name, fr)
		}
	}
	same := rowsOf(t, 100, iid(9, 0, uniform))
	if rep, err = Compare(ref, same, Options{}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"temp", "mode"} {
		if fr := rep.Features[name]; fr.Drift {
			t.Errorf("%s: a window like the reference drifts: %+v", name, fr)
		}
	}
}

// TestCalibrateZeroSpread: every calibration window is exactly the reference's distribution,
// so the scores have sd 0. The p-value threshold max(0, 1 - 3*0) = 1 flagged any window whose
// p-value was below 1, i.e. almost every window. The threshold must not sit below what the
// method's default would accept.
func TestCalibrateZeroSpread(t *testing.T) {
	modes := []string{"a", "b", "c", "d"}
	cyc := func(shift float64) func(int) (float64, string) {
		return func(i int) (float64, string) { return float64(i%100) + shift, modes[i%4] }
	}
	ref := rowsOf(t, 400, cyc(0))
	windows := []*profile.Profile{rowsOf(t, 100, cyc(0)), rowsOf(t, 100, cyc(0)), rowsOf(t, 100, cyc(0)), rowsOf(t, 100, cyc(0))}
	ref = calibrated(t, ref, windows)
	// A small shift (D = 0.1, p about 0.4 for 400 vs 100 values) and a slightly uneven mode mix.
	slight := rowsOf(t, 100, func(i int) (float64, string) {
		m := modes[i%4]
		if i == 1 {
			m = "a"
		}
		return float64(i%100) + 10, m
	})
	rep, err := Compare(ref, slight, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"temp", "mode"} {
		if fr := rep.Features[name]; fr.Drift || !fr.Calibrated {
			t.Errorf("%s: a small deviation drifts with zero-spread calibration: %+v", name, fr)
		}
	}
	gross := rowsOf(t, 100, func(i int) (float64, string) { return float64(i%100) + 60, "a" })
	if rep, err = Compare(ref, gross, Options{}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"temp", "mode"} {
		if fr := rep.Features[name]; !fr.Drift {
			t.Errorf("%s: a gross shift does not drift: %+v", name, fr)
		}
	}
}

// TestLegacyPValueThresholdIgnored: a profile calibrated on p-values (what hubs stored before
// statistic calibration: 0 or 1 in the degenerate cases) must not decide; the method's default
// does, and the report does not claim calibration. A distance threshold still applies.
func TestLegacyPValueThresholdIgnored(t *testing.T) {
	cyc := func(shift float64) func(int) (float64, string) {
		return func(i int) (float64, string) {
			if i == 1 { // a 51/49 mode mix in a window: p < 1, far from 0.05
				return float64(i%100) + shift, "a"
			}
			return float64(i%100) + shift, []string{"a", "b"}[i%2]
		}
	}
	ref := rowsOf(t, 400, func(i int) (float64, string) { return float64(i % 100), []string{"a", "b"}[i%2] })
	if err := ref.SetThreshold("temp", profile.Threshold{Method: string(KS), Value: 0}); err != nil {
		t.Fatal(err)
	}
	if err := ref.SetThreshold("mode", profile.Threshold{Method: string(ChiSquare), Value: 1}); err != nil {
		t.Fatal(err)
	}
	rep, err := Compare(ref, rowsOf(t, 100, cyc(60)), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if fr := rep.Features["temp"]; fr.Calibrated || fr.Threshold != 0.05 || !fr.Drift || fr.ScoreType != ScorePValue {
		t.Errorf("legacy ks threshold 0 decided: %+v", fr)
	}
	if fr := rep.Features["mode"]; fr.Calibrated || fr.Drift {
		t.Errorf("legacy chisquare threshold 1 decided: %+v", fr)
	}
	if err := ref.SetThreshold("temp", profile.Threshold{Method: string(Wasserstein), Value: 0.7}); err != nil {
		t.Fatal(err)
	}
	if rep, err = Compare(ref, rowsOf(t, 100, cyc(60)), Options{Features: map[string]FeatureOptions{"temp": {Method: Wasserstein}}}); err != nil {
		t.Fatal(err)
	}
	if fr := rep.Features["temp"]; !fr.Calibrated || fr.Threshold != 0.7 || fr.ScoreType != ScoreDistance {
		t.Errorf("distance threshold not applied: %+v", fr)
	}
}
