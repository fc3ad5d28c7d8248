package drift

import (
	"encoding/json"
	"math"
	"os"
	"strconv"
	"testing"

	"github.com/driftline/driftline/shared/contract"
	"github.com/driftline/driftline/shared/profile"
)

// sampleSpec mirrors a sample description in testdata/golden.json (see gen_golden.py).
type sampleSpec struct {
	Dist  string    `json:"dist"`
	N     int       `json:"n"`
	Seed  uint64    `json:"seed"`
	Loc   float64   `json:"loc"`
	Scale float64   `json:"scale"`
	Probs []float64 `json:"probs"`
}

type goldenCase struct {
	Name   string     `json:"name"`
	Kind   string     `json:"kind"`
	Ref    sampleSpec `json:"ref"`
	Cur    sampleSpec `json:"cur"`
	RefSum float64    `json:"ref_sum"`
	CurSum float64    `json:"cur_sum"`
	// numeric
	KSD      float64 `json:"ks_d"`
	KSP      float64 `json:"ks_p"`
	W        float64 `json:"wasserstein"`
	RefStd   float64 `json:"ref_std"`
	WNorm    float64 `json:"wasserstein_norm"`
	PSIValue float64 `json:"psi"`
	// categorical
	ChiP float64 `json:"chi_p"`
	JS   float64 `json:"jensenshannon"`
}

func loadGolden(t *testing.T) []goldenCase {
	t.Helper()
	b, err := os.ReadFile("testdata/golden.json")
	if err != nil {
		t.Fatal(err)
	}
	var g struct {
		Cases []goldenCase `json:"cases"`
	}
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatal(err)
	}
	return g.Cases
}

// splitmix reproduces gen_golden.py's uniform stream.
type splitmix struct{ state uint64 }

func (s *splitmix) next() float64 {
	s.state += 0x9E3779B97F4A7C15
	z := s.state
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
	z = (z ^ (z >> 27)) * 0x94D049BB133111EB
	z ^= z >> 31
	return float64(z>>11) * (1.0 / (1 << 53))
}

// generate reproduces gen_golden.py's sample(): numbers, or category indexes as float64.
func generate(spec sampleSpec) []float64 {
	u := &splitmix{spec.Seed * 0xD1B54A32D192ED03}
	out := make([]float64, spec.N)
	normal := func() float64 {
		u1, u2 := 1-u.next(), u.next()
		return math.Sqrt(-2*math.Log(u1)) * math.Cos(2*math.Pi*u2)
	}
	var cum []float64
	var acc float64
	for _, p := range spec.Probs {
		acc += p
		cum = append(cum, acc)
	}
	for i := range out {
		switch spec.Dist {
		case "normal":
			out[i] = spec.Loc + spec.Scale*normal()
		case "rounded":
			out[i] = math.RoundToEven(spec.Loc + spec.Scale*normal())
		case "exponential":
			out[i] = spec.Loc - spec.Scale*math.Log(1-u.next())
		case "categorical":
			x := u.next()
			j := 0
			for j < len(cum)-1 && x >= cum[j] {
				j++
			}
			out[i] = float64(j)
		}
	}
	return out
}

func sum(xs []float64) (s float64) {
	for _, x := range xs {
		s += x
	}
	return s
}

func numericProfile(t testing.TB, xs []float64) *profile.Profile {
	t.Helper()
	p, err := profile.New([]profile.Column{{Name: "x", Kind: profile.Numeric}})
	if err != nil {
		t.Fatal(err)
	}
	row := make([]contract.Value, 1)
	for _, x := range xs {
		row[0] = contract.Value{Kind: contract.KindNumber, Num: x}
		if err := p.Add(row); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

func categoricalProfile(t testing.TB, xs []float64) *profile.Profile {
	t.Helper()
	p, err := profile.New([]profile.Column{{Name: "x", Kind: profile.Categorical}})
	if err != nil {
		t.Fatal(err)
	}
	row := make([]contract.Value, 1)
	for _, x := range xs {
		row[0] = contract.Value{Kind: contract.KindString, Str: "c" + strconv.Itoa(int(x))}
		if err := p.Add(row); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// Error bounds checked here; DESIGN.md states them.
const (
	boundKS   = 0.02 // |D_sketch - D_exact|
	boundW    = 0.02 // |W1/sd sketch - exact|
	boundPSI  = 0.02 // |PSI sketch - exact|
	boundExac = 1e-9 // categorical tests with <= 128 categories are exact
	boundP    = 0.03 // |asymptotic p - SciPy's p| at the same D
)

func TestGoldenNumeric(t *testing.T) {
	var worstD, worstW, worstPSI float64
	for _, gc := range loadGolden(t) {
		if gc.Kind != "numeric" {
			continue
		}
		a, b := generate(gc.Ref), generate(gc.Cur)
		if rel := math.Abs(sum(a)-gc.RefSum) / math.Abs(gc.RefSum); rel > 1e-9 {
			t.Fatalf("%s: Go sample differs from Python's (sum %v vs %v)", gc.Name, sum(a), gc.RefSum)
		}
		if rel := math.Abs(sum(b)-gc.CurSum) / math.Abs(gc.CurSum); rel > 1e-9 {
			t.Fatalf("%s: Go sample differs from Python's (sum %v vs %v)", gc.Name, sum(b), gc.CurSum)
		}
		ref, cur := numericProfile(t, a), numericProfile(t, b)
		rc, _ := ref.Column("x")
		if rel := math.Abs(rc.StdDev()-gc.RefStd) / gc.RefStd; rel > 1e-9 {
			t.Errorf("%s: std %v, want %v", gc.Name, rc.StdDev(), gc.RefStd)
		}
		ks := FeatureOptions{Method: KS}
		rep, err := Compare(ref, cur, Options{Features: map[string]FeatureOptions{"x": ks}})
		if err != nil {
			t.Fatal(err)
		}
		fr := rep.Features["x"]
		dD, dW, dP := math.Abs(*fr.KS-gc.KSD), math.Abs(*fr.Wasserstein-gc.WNorm), math.Abs(*fr.PSI-gc.PSIValue)
		worstD, worstW, worstPSI = max(worstD, dD), max(worstW, dW), max(worstPSI, dP)
		t.Logf("%-40s D %.4f/%.4f p %.3g/%.3g W %.4f/%.4f PSI %.4f/%.4f", gc.Name, *fr.KS, gc.KSD,
			fr.Score, gc.KSP, *fr.Wasserstein, gc.WNorm, *fr.PSI, gc.PSIValue)
		if dD > boundKS || dW > boundW || dP > boundPSI {
			t.Errorf("%s: |dD| %.4f |dW| %.4f |dPSI| %.4f over bounds", gc.Name, dD, dW, dP)
		}
		// The asymptotic p-value of the exact D must match SciPy's.
		n, m := uint64(gc.Ref.N), uint64(gc.Cur.N)
		if p := ksPValue(gc.KSD, n, m); math.Abs(p-gc.KSP) > boundP {
			t.Errorf("%s: p(D exact) %.4g, scipy %.4g", gc.Name, p, gc.KSP)
		}
		// Away from the threshold (the decision holds for any D within boundKS of the exact
		// one), the sketch's decision must be the exact test's.
		lo, hi := ksPValue(gc.KSD+boundKS, n, m), ksPValue(max(0, gc.KSD-boundKS), n, m)
		if (lo < 0.05) == (hi < 0.05) && fr.Drift != (gc.KSP < 0.05) {
			t.Errorf("%s: ks drift %v, exact p %.4g", gc.Name, fr.Drift, gc.KSP)
		}
		if math.Abs(gc.WNorm-0.1) > boundW && (*fr.Wasserstein > 0.1) != (gc.WNorm > 0.1) {
			t.Errorf("%s: wasserstein decision differs: %.4f vs exact %.4f", gc.Name, *fr.Wasserstein, gc.WNorm)
		}
	}
	t.Logf("worst |dD| %.4f |dW| %.4f |dPSI| %.4f", worstD, worstW, worstPSI)
}

func TestGoldenCategorical(t *testing.T) {
	for _, gc := range loadGolden(t) {
		if gc.Kind != "categorical" {
			continue
		}
		a, b := generate(gc.Ref), generate(gc.Cur)
		if sum(a) != gc.RefSum || sum(b) != gc.CurSum {
			t.Fatalf("%s: Go sample differs from Python's", gc.Name)
		}
		ref, cur := categoricalProfile(t, a), categoricalProfile(t, b)
		for _, m := range []Method{ChiSquare, JensenShannon} {
			rep, err := Compare(ref, cur, Options{Features: map[string]FeatureOptions{"x": {Method: m}}})
			if err != nil {
				t.Fatal(err)
			}
			want := gc.ChiP
			if m == JensenShannon {
				want = gc.JS
			}
			got := rep.Features["x"].Score
			t.Logf("%-32s %-13s %.6g / %.6g", gc.Name, m, got, want)
			if math.Abs(got-want) > boundExac*max(1, math.Abs(want)) && math.Abs(got-want) > 1e-12 {
				t.Errorf("%s %s: %.12g, want %.12g", gc.Name, m, got, want)
			}
		}
	}
}
