package drift

import (
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	"github.com/driftline/driftline/shared/contract"
	"github.com/driftline/driftline/shared/profile"
)

var twoCols = []profile.Column{{Name: "temp", Kind: profile.Numeric}, {Name: "mode", Kind: profile.Categorical}}

// mixed builds a profile of n rows: temp ~ N(loc, 1), mode from modes with weights.
func mixed(t testing.TB, seed uint64, n int, loc float64, modes []string) *profile.Profile {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 1))
	p, err := profile.New(twoCols)
	if err != nil {
		t.Fatal(err)
	}
	row := make([]contract.Value, 2)
	for range n {
		row[0] = contract.Value{Kind: contract.KindNumber, Num: loc + r.NormFloat64()}
		row[1] = contract.Value{Kind: contract.KindString, Str: modes[r.IntN(len(modes))]}
		if err := p.Add(row); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

func ptr(f float64) *float64 { return &f }

func TestKolmogorovQ(t *testing.T) {
	// Reference values: scipy.special.kolmogorov(x) (SciPy 1.10), on both sides of the switch
	// between the two series at 1.18.
	cases := []struct{ x, want float64 }{
		{0, 1}, {0.3, 0.9999906941986655}, {0.5, 0.9639452436648751}, {0.8, 0.5441424115741981},
		{1.0, 0.26999967167735456}, {1.1795, 0.12374523567427816}, {1.1805, 0.12316294497895294},
		{1.36, 0.049485876755377876}, {1.63, 0.009846364888486529}, {2.5, 7.453306344157342e-06},
	}
	for _, tc := range cases {
		if got := kolmogorovQ(tc.x); math.Abs(got-tc.want) > 1e-12 {
			t.Errorf("Q(%v) = %.6f, want %.6f", tc.x, got, tc.want)
		}
	}
}

func TestExactOnSmallSamples(t *testing.T) {
	// D, W1 and PSI by hand for two tiny samples (sketches are exact below k values).
	a := numericProfile(t, []float64{1, 2, 3, 4})
	b := numericProfile(t, []float64{3, 4, 5, 6})
	ac, _ := a.Column("x")
	bc, _ := b.Column("x")
	d, w, _ := numericStats(ac.Quantiles().CDF(), bc.Quantiles().CDF(), 1)
	if d != 0.5 || w != 2 {
		t.Fatalf("D %v W1 %v, want 0.5 and 2", d, w)
	}
	_, _, p := numericStats(ac.Quantiles().CDF(), ac.Quantiles().CDF(), 1)
	if p != 0 {
		t.Fatalf("PSI of a sample with itself %v", p)
	}
}

func TestDefaultsBySize(t *testing.T) {
	modes := []string{"a", "b", "c"}
	cases := []struct {
		refRows    int
		num, cat   Method
		numT, catT float64
	}{
		{1000, KS, ChiSquare, 0.05, 0.05},
		{1001, Wasserstein, JensenShannon, 0.1, 0.1},
	}
	for _, tc := range cases {
		ref := mixed(t, 1, tc.refRows, 0, modes)
		rep, err := Compare(ref, mixed(t, 2, 500, 0, modes), Options{})
		if err != nil {
			t.Fatal(err)
		}
		num, cat := rep.Features["temp"], rep.Features["mode"]
		if num.Method != tc.num || cat.Method != tc.cat || num.Threshold != tc.numT || cat.Threshold != tc.catT {
			t.Errorf("ref %d rows: %s/%v %s/%v", tc.refRows, num.Method, num.Threshold, cat.Method, cat.Threshold)
		}
		if num.KS == nil || num.PSI == nil || num.Wasserstein == nil || cat.KS != nil {
			t.Errorf("ref %d rows: numeric stats missing or categorical has KS", tc.refRows)
		}
		if rep.DatasetDrift || rep.Drifted != 0 {
			t.Errorf("ref %d rows: same distribution drifted: %+v", tc.refRows, rep)
		}
	}
}

func TestDetectsShift(t *testing.T) {
	ref := mixed(t, 1, 20000, 0, []string{"a", "b", "c"})
	for _, tc := range []struct {
		name     string
		cur      *profile.Profile
		num, cat bool
	}{
		{"same", mixed(t, 2, 2000, 0, []string{"a", "b", "c"}), false, false},
		{"mean shift", mixed(t, 3, 2000, 0.5, []string{"a", "b", "c"}), true, false},
		{"category swap", mixed(t, 4, 2000, 0, []string{"a", "d", "d"}), false, true},
		{"both", mixed(t, 5, 2000, -1, []string{"c"}), true, true},
	} {
		rep, err := Compare(ref, tc.cur, Options{})
		if err != nil {
			t.Fatal(err)
		}
		num, cat := rep.Features["temp"], rep.Features["mode"]
		t.Logf("%s: temp %s=%.4f mode %s=%.4f", tc.name, num.Method, num.Score, cat.Method, cat.Score)
		if num.Drift != tc.num || cat.Drift != tc.cat {
			t.Errorf("%s: drift temp=%v mode=%v, want %v %v", tc.name, num.Drift, cat.Drift, tc.num, tc.cat)
		}
		wantShare := (b2f(tc.num) + b2f(tc.cat)) / 2
		if rep.DriftShare != wantShare || rep.DatasetDrift != (wantShare >= 0.5) {
			t.Errorf("%s: share %v dataset %v", tc.name, rep.DriftShare, rep.DatasetDrift)
		}
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func TestOverridesAndPrecedence(t *testing.T) {
	modes := []string{"a", "b"}
	ref := mixed(t, 1, 5000, 0, modes)
	cur := mixed(t, 2, 1000, 0.3, modes)
	if err := ref.SetThreshold("temp", profile.Threshold{Method: "wasserstein", Value: 0.9}); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name       string
		opts       Options
		method     Method
		threshold  float64
		calibrated bool
	}{
		{"calibrated wins over default", Options{}, Wasserstein, 0.9, true},
		{"explicit wins over calibrated", Options{Features: map[string]FeatureOptions{"temp": {Threshold: ptr(0.2)}}}, Wasserstein, 0.2, false},
		{"calibration for another method ignored", Options{Features: map[string]FeatureOptions{"temp": {Method: PSI}}}, PSI, 0.1, false},
		{"ignore calibration", Options{IgnoreCalibration: true}, Wasserstein, 0.1, false},
		{"ks on large reference", Options{Features: map[string]FeatureOptions{"temp": {Method: KS}}}, KS, 0.05, false},
		{"chisquare on numeric bins", Options{Features: map[string]FeatureOptions{"temp": {Method: ChiSquare}}}, ChiSquare, 0.05, false},
		{"jensenshannon on numeric bins", Options{Features: map[string]FeatureOptions{"temp": {Method: JensenShannon}}}, JensenShannon, 0.1, false},
	}
	for _, tc := range cases {
		rep, err := Compare(ref, cur, tc.opts)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		fr := rep.Features["temp"]
		if fr.Method != tc.method || fr.Threshold != tc.threshold || fr.Calibrated != tc.calibrated {
			t.Errorf("%s: %s %v calibrated=%v", tc.name, fr.Method, fr.Threshold, fr.Calibrated)
		}
		if fr.Drift != (fr.Method.IsPValue() && fr.Score < fr.Threshold || !fr.Method.IsPValue() && fr.Score > fr.Threshold) {
			t.Errorf("%s: drift %v inconsistent with score %v", tc.name, fr.Drift, fr.Score)
		}
	}
	rep, err := Compare(ref, cur, Options{Features: map[string]FeatureOptions{"mode": {Method: PSI}}, Only: []string{"mode"}, DriftShare: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := rep.Features["temp"]; ok || rep.Features["mode"].Method != PSI || rep.ShareThreshold != 1 {
		t.Fatalf("only/psi on categorical/share: %+v", rep)
	}
}

func TestCompareErrors(t *testing.T) {
	ref := mixed(t, 1, 100, 0, []string{"a"})
	other, _ := profile.New([]profile.Column{{Name: "temp", Kind: profile.Categorical}, {Name: "mode", Kind: profile.Categorical}})
	missing, _ := profile.New([]profile.Column{{Name: "mode", Kind: profile.Categorical}})
	cases := []struct {
		name string
		cur  *profile.Profile
		opts Options
		want error
	}{
		{"kind differs", other, Options{}, ErrMismatch},
		{"column missing", missing, Options{}, ErrMismatch},
		{"unknown feature", ref, Options{Features: map[string]FeatureOptions{"nope": {}}}, ErrUnknownFeature},
		{"unknown only", ref, Options{Only: []string{"nope"}}, ErrUnknownFeature},
		{"unknown method", ref, Options{Features: map[string]FeatureOptions{"temp": {Method: "magic"}}}, ErrMethod},
		{"ks on categorical", ref, Options{Features: map[string]FeatureOptions{"mode": {Method: KS}}}, ErrMethod},
		{"wasserstein on categorical", ref, Options{Features: map[string]FeatureOptions{"mode": {Method: Wasserstein}}}, ErrMethod},
		{"NaN threshold", ref, Options{Features: map[string]FeatureOptions{"temp": {Threshold: ptr(math.NaN())}}}, ErrThreshold},
		{"share over 1", ref, Options{DriftShare: 1.5}, ErrThreshold},
	}
	for _, tc := range cases {
		if _, err := Compare(ref, tc.cur, tc.opts); !errors.Is(err, tc.want) {
			t.Errorf("%s: err %v, want %v", tc.name, err, tc.want)
		}
	}
}

func TestSkippedAndJSON(t *testing.T) {
	ref := mixed(t, 1, 2000, 0, []string{"a", "b"})
	cur, _ := profile.New(twoCols)
	row := []contract.Value{{}, {Kind: contract.KindString, Str: "zzz"}}
	for range 50 {
		if err := cur.Add(row); err != nil {
			t.Fatal(err)
		}
	}
	rep, err := Compare(ref, cur, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Features["temp"].Skipped == "" || rep.Scored != 1 || !rep.Features["mode"].Drift || rep.DriftShare != 1 {
		t.Fatalf("report %+v", rep)
	}
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	for _, field := range []string{`"dataset_drift":true`, `"drift_share":1`, `"method":"jensenshannon"`, `"threshold":0.1`, `"drift":true`, `"score":`} {
		if !strings.Contains(string(b), field) {
			t.Errorf("JSON lacks %s: %s", field, b)
		}
	}
	// Numeric fields carry ks, psi and wasserstein.
	rep, _ = Compare(ref, mixed(t, 3, 300, 0, []string{"a"}), Options{})
	b, _ = json.Marshal(rep.Features["temp"])
	for _, field := range []string{`"ks":`, `"psi":`, `"wasserstein":`} {
		if !strings.Contains(string(b), field) {
			t.Errorf("numeric JSON lacks %s: %s", field, b)
		}
	}
}

func TestNewCategoryIsChiSquareDrift(t *testing.T) {
	ref := mixed(t, 1, 500, 0, []string{"a", "b"})
	cur := mixed(t, 2, 500, 0, []string{"a", "b", "new"})
	rep, err := Compare(ref, cur, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if fr := rep.Features["mode"]; fr.Method != ChiSquare || fr.Score != 0 || !fr.Drift {
		t.Fatalf("unseen category: %+v", fr)
	}
}

func TestManyCategoriesUseOtherBucket(t *testing.T) {
	// 1,000 values, more than the summary tracks: the untracked mass lands in one bucket and
	// the same distribution still does not drift.
	build := func(seed uint64) *profile.Profile {
		r := rand.New(rand.NewPCG(seed, 3))
		p, _ := profile.New([]profile.Column{{Name: "id", Kind: profile.Categorical}})
		row := make([]contract.Value, 1)
		for range 20000 {
			row[0] = contract.Value{Kind: contract.KindString, Str: "id" + strconv.Itoa(r.IntN(1000))}
			_ = p.Add(row)
		}
		return p
	}
	rep, err := Compare(build(1), build(2), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if fr := rep.Features["id"]; fr.Drift {
		t.Fatalf("same distribution drifted: %+v", fr)
	}
}

func TestNonFiniteStatisticsAreSkipped(t *testing.T) {
	// Values at the float64 limits overflow W1 and the moments: the feature is skipped and the
	// report still encodes as JSON.
	ref := numericProfile(t, []float64{-math.MaxFloat64, math.MaxFloat64, 0})
	cur := numericProfile(t, []float64{math.MaxFloat64, math.MaxFloat64})
	rep, err := Compare(ref, cur, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Features["x"].Skipped == "" || rep.Scored != 0 || rep.DatasetDrift {
		t.Fatalf("report %+v", rep.Features["x"])
	}
	if _, err := json.Marshal(rep); err != nil {
		t.Fatal(err)
	}
}
