package drift

import (
	"errors"
	"fmt"
	"iter"
	"math"
	"math/rand/v2"
	"testing"

	"gonum.org/v1/gonum/stat/distuv"

	"github.com/driftline/driftline/shared/contract"
	"github.com/driftline/driftline/shared/profile"
)

// seasonal yields n rows of a slowly drifting sensor (a daily cycle plus noise) and a mode.
func seasonal(seed uint64, n int, shift float64) iter.Seq[[]contract.Value] {
	return func(yield func([]contract.Value) bool) {
		r := rand.New(rand.NewPCG(seed, 2))
		row := make([]contract.Value, 2)
		for i := range n {
			x := 10*math.Sin(2*math.Pi*float64(i)/288) + r.NormFloat64() + shift
			row[0] = contract.Value{Kind: contract.KindNumber, Num: x}
			row[1] = contract.Value{Kind: contract.KindString, Str: []string{"a", "b", "c"}[r.IntN(3)]}
			if !yield(row) {
				return
			}
		}
	}
}

func profileOf(t testing.TB, rows iter.Seq[[]contract.Value]) *profile.Profile {
	t.Helper()
	p, err := profile.New(twoCols)
	if err != nil {
		t.Fatal(err)
	}
	for row := range rows {
		if err := p.Add(row); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// Calibrate and Apply are the in-memory form of calibration the tests state expectations with:
// shared/reference.Build streams windows through a Calibrator instead.

// Calibrate scores every window against ref and returns per feature the threshold a
// Calibrator learns from them (see Calibrator). ErrTooFewWindows with fewer than two windows.
func Calibrate(windows []*profile.Profile, ref *profile.Profile, opts CalibrateOptions) (map[string]profile.Threshold, error) {
	c, err := NewCalibrator(ref, opts)
	if err != nil {
		return nil, err
	}
	for _, w := range windows {
		if err := c.Add(w); err != nil {
			return nil, err
		}
	}
	res, err := c.Result()
	if err != nil {
		return nil, err
	}
	out := make(map[string]profile.Threshold, len(res))
	for _, r := range res {
		out[r.Feature] = r.Threshold
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

// calibrateRows profiles rows in one pass as the whole reference and as consecutive windows
// of windowRows rows (a trailing partial window is dropped), calibrates, and returns the
// reference with the thresholds stored in it: the simplest correct calibration, which the
// streaming builders (shared/reference) are checked against.
func calibrateRows(cols []profile.Column, rows iter.Seq[[]contract.Value], windowRows int, opts CalibrateOptions) (*profile.Profile, error) {
	if windowRows < 1 {
		return nil, ErrTooFewWindows
	}
	ref, err := profile.New(cols)
	if err != nil {
		return nil, err
	}
	var windows []*profile.Profile
	var cur *profile.Profile
	for row := range rows {
		if cur == nil {
			if cur, err = profile.New(cols); err != nil {
				return nil, err
			}
		}
		if err := ref.Add(row); err != nil {
			return nil, err
		}
		_ = cur.Add(row)
		if cur.Rows() == uint64(windowRows) {
			windows = append(windows, cur)
			cur = nil
		}
	}
	th, err := Calibrate(windows, ref, opts)
	if err != nil {
		return nil, err
	}
	return ref, Apply(ref, th)
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

func TestCalibrateRows(t *testing.T) {
	// Windows of 100 rows see a third of the cycle: far from the whole reference by fixed
	// thresholds, ordinary once calibrated.
	ref, err := calibrateRows(twoCols, seasonal(1, 288*10, 0), 100, CalibrateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	temp, _ := ref.Column("temp")
	th, ok := temp.Threshold()
	if !ok || th.Method != string(Wasserstein) || th.Value <= 0.1 {
		t.Fatalf("temp threshold %+v %v", th, ok)
	}
	mode, _ := ref.Column("mode")
	if mt, ok := mode.Threshold(); !ok || mt.Method != string(JensenShannon) {
		t.Fatalf("mode threshold %+v %v", mt, ok)
	}
	// The thresholds survive the encoding.
	dec, err := profile.Decode(ref.Encode())
	if err != nil {
		t.Fatal(err)
	}
	var fixedFlags, calFlags int
	windows := 0
	for w := range 20 {
		cur := profileOf(t, func(yield func([]contract.Value) bool) {
			i := 0
			for row := range seasonal(100+uint64(w), 288*2, 0) {
				if i >= w*7 && i < w*7+100 && !yield(row) {
					return
				}
				i++
			}
		})
		fixed, err := Compare(dec, cur, Options{IgnoreCalibration: true})
		if err != nil {
			t.Fatal(err)
		}
		cal, err := Compare(dec, cur, Options{})
		if err != nil {
			t.Fatal(err)
		}
		windows++
		fixedFlags += int(b2f(fixed.Features["temp"].Drift))
		calFlags += int(b2f(cal.Features["temp"].Drift))
	}
	t.Logf("threshold %.3f: fixed flags %d/%d windows, calibrated %d/%d", th.Value, fixedFlags, windows, calFlags, windows)
	if fixedFlags < windows/2 || calFlags > windows/10 {
		t.Fatalf("fixed %d, calibrated %d of %d", fixedFlags, calFlags, windows)
	}
	// A real shift still drifts under the calibrated threshold.
	rows := 0
	shifted := profileOf(t, func(yield func([]contract.Value) bool) {
		for row := range seasonal(7, 288, 15) {
			rows++
			if !yield(row) {
				return
			}
		}
	})
	rep, err := Compare(dec, shifted, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if fr := rep.Features["temp"]; !fr.Drift || !fr.Calibrated {
		t.Fatalf("shift of 15 not flagged: %+v", fr)
	}
}

func TestCalibrateFormula(t *testing.T) {
	ref := profileOf(t, seasonal(1, 3000, 0))
	var windows []*profile.Profile
	for i := range 6 {
		windows = append(windows, profileOf(t, seasonal(uint64(10+i), 300, float64(i)/5)))
	}
	opts := CalibrateOptions{Factor: 2, Compare: Options{Features: map[string]FeatureOptions{"mode": {Method: ChiSquare}}}}
	th, err := Calibrate(windows, ref, opts)
	if err != nil {
		t.Fatal(err)
	}
	// Both are calibrated on the statistic (W1/sd; the chi-square statistic, not its p-value),
	// never below the statistic at the method's default threshold (0.1; chi-square with 2
	// degrees of freedom at p = 0.05).
	floors := map[string]float64{"temp": 0.1, "mode": distuv.ChiSquared{K: 2}.Quantile(0.95)}
	for name, m := range map[string]Method{"temp": Wasserstein, "mode": ChiSquare} {
		var s []float64
		for _, w := range windows {
			rep, _ := Compare(ref, w, opts.Compare)
			fr := rep.Features[name]
			if m == ChiSquare {
				s = append(s, *fr.ChiSquare)
			} else {
				s = append(s, fr.Score)
			}
		}
		mean, sd := meanSD(s)
		want := max(mean+2*sd, floors[name])
		if th[name].Method != string(m) || th[name].OnStatistic != m.IsPValue() || math.Abs(th[name].Value-want) > 1e-9 {
			t.Errorf("%s: %+v, want %s %v (mean %v sd %v)", name, th[name], m, want, mean, sd)
		}
	}
}

func TestCalibrateErrors(t *testing.T) {
	ref := profileOf(t, seasonal(1, 500, 0))
	one := []*profile.Profile{profileOf(t, seasonal(2, 100, 0))}
	if _, err := Calibrate(one, ref, CalibrateOptions{}); !errors.Is(err, ErrTooFewWindows) {
		t.Errorf("one window: %v", err)
	}
	two := append(one, one[0])
	if _, err := Calibrate(two, ref, CalibrateOptions{Factor: math.Inf(1)}); !errors.Is(err, ErrThreshold) {
		t.Errorf("infinite factor: %v", err)
	}
	if _, err := calibrateRows(twoCols, seasonal(1, 150, 0), 100, CalibrateOptions{}); !errors.Is(err, ErrTooFewWindows) {
		t.Errorf("one full window: %v", err)
	}
	if _, err := calibrateRows(twoCols, seasonal(1, 150, 0), 0, CalibrateOptions{}); !errors.Is(err, ErrTooFewWindows) {
		t.Errorf("zero window rows: %v", err)
	}
	bad := func(yield func([]contract.Value) bool) { yield([]contract.Value{{}}) }
	if _, err := calibrateRows(twoCols, bad, 10, CalibrateOptions{}); !errors.Is(err, profile.ErrRowShape) {
		t.Errorf("bad row: %v", err)
	}
}
