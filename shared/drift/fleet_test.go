package drift

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/driftline/driftline/shared/contract"
	"github.com/driftline/driftline/shared/profile"
)

// exactCDF is the step CDF of raw values, the shape profile.CDF gives for a sketch.
func exactCDF(xs []float64) profile.CDF {
	s := slices.Clone(xs)
	slices.Sort(s)
	c := profile.CDF{N: uint64(len(s))}
	for i, v := range s {
		if len(c.Values) > 0 && c.Values[len(c.Values)-1] == v {
			c.Cum[len(c.Cum)-1] = uint64(i + 1)
			continue
		}
		c.Values = append(c.Values, v)
		c.Cum = append(c.Cum, uint64(i+1))
	}
	return c
}

func popSD(xs []float64) float64 {
	var m, ss float64
	for _, x := range xs {
		m += x
	}
	m /= float64(len(xs))
	for _, x := range xs {
		ss += (x - m) * (x - m)
	}
	return math.Sqrt(ss / float64(len(xs)))
}

// side is one set of rows kept raw (for the exact statistics) and profiled (for the sketches).
type side struct {
	temp  []float64
	modes map[string]float64
	p     *profile.Profile
}

func newSide(t *testing.T) *side {
	p, err := profile.New(twoCols)
	if err != nil {
		t.Fatal(err)
	}
	return &side{modes: map[string]float64{}, p: p}
}

func (s *side) add(t *testing.T, x float64, m string) {
	s.temp = append(s.temp, x)
	s.modes[m]++
	if err := s.p.Add([]contract.Value{{Kind: contract.KindNumber, Num: x}, {Kind: contract.KindString, Str: m}}); err != nil {
		t.Fatal(err)
	}
}

// exactCounts aligns raw category counts the way categoryCounts aligns summaries.
func exactCounts(ref, cur map[string]float64) (rc, cc []float64) {
	var names []string
	for k := range ref {
		names = append(names, k)
	}
	for k := range cur {
		if _, ok := ref[k]; !ok {
			names = append(names, k)
		}
	}
	slices.Sort(names)
	for _, k := range names {
		rc = append(rc, ref[k])
		cc = append(cc, cur[k])
	}
	return rc, cc
}

// TestFleetMergeMatchesUnion is the property behind the fleet view: the statistics of the
// merged device profiles (each encoded and decoded, as the hub receives them, then merged as
// hub/fleetdrift merges them) equal the statistics over the union of every device's raw rows, within
// the sketches' error bounds (DESIGN.md): KS D, W1/sd and PSI within 0.02; chi-square,
// Jensen-Shannon and categorical PSI exactly (at most 128 categories are counted exactly).
func TestFleetMergeMatchesUnion(t *testing.T) {
	var worstD, worstW, worstPSI float64
	for seed := range uint64(12) {
		r := rand.New(rand.NewPCG(seed, 17))
		modes := []string{"idle", "run", "boost", "cool", "fault"}[:2+r.IntN(4)]
		ref := newSide(t)
		for range 5000 + r.IntN(20000) {
			ref.add(t, r.NormFloat64(), modes[r.IntN(len(modes))])
		}
		var fleet *profile.Profile
		union := newSide(t)
		devices := 2 + r.IntN(8)
		for range devices {
			shift, scale := 0.3*r.NormFloat64(), 1+0.2*r.Float64()
			skew := r.IntN(len(modes))
			dev := newSide(t)
			for range 300 + r.IntN(4000) {
				m := modes[r.IntN(len(modes))]
				if r.Float64() < 0.1 {
					m = modes[skew]
				}
				x := shift + scale*r.NormFloat64()
				dev.add(t, x, m)
				union.add(t, x, m)
			}
			got, err := profile.Decode(dev.p.Encode())
			if err != nil {
				t.Fatal(err)
			}
			if fleet == nil {
				fleet = got.Clone()
			} else if err := fleet.Merge(got); err != nil {
				t.Fatal(err)
			}
		}
		rc, _ := ref.p.Column("temp")
		fc, _ := fleet.Column("temp")
		d, w, p := numericStats(rc.Quantiles().CDF(), fc.Quantiles().CDF(), rc.StdDev())
		ed, ew, ep := numericStats(exactCDF(ref.temp), exactCDF(union.temp), popSD(ref.temp))
		worstD, worstW, worstPSI = max(worstD, math.Abs(d-ed)), max(worstW, math.Abs(w-ew)), max(worstPSI, math.Abs(p-ep))
		if math.Abs(d-ed) > 0.02 || math.Abs(w-ew) > 0.02 || math.Abs(p-ep) > 0.02 {
			t.Errorf("seed %d, %d devices: merged D %.4f W %.4f PSI %.4f, union of rows D %.4f W %.4f PSI %.4f",
				seed, devices, d, w, p, ed, ew, ep)
		}
		if fleet.Rows() != uint64(len(union.temp)) {
			t.Fatalf("merged %d rows, union %d", fleet.Rows(), len(union.temp))
		}
		// Categorical: the merged frequent items count exactly.
		rm, _ := ref.p.Column("mode")
		fm, _ := fleet.Column("mode")
		sr, sc := categoryCounts(rm.Frequent(), fm.Frequent())
		er, ec := exactCounts(ref.modes, union.modes)
		stat, pv := chiSquareP(sr, sc)
		estat, epv := chiSquareP(er, ec)
		near := func(a, b float64) bool { return math.Abs(a-b) <= 1e-9*max(1, math.Abs(b)) }
		if !near(stat, estat) || !near(pv, epv) {
			t.Errorf("seed %d: merged chi-square %.6g (p %.6g), union %.6g (p %.6g)", seed, stat, pv, estat, epv)
		}
		if js, ejs := jensenShannon(sr, sc), jensenShannon(er, ec); !near(js, ejs) {
			t.Errorf("seed %d: merged Jensen-Shannon %.6g, union %.6g", seed, js, ejs)
		}
		if ps, eps := psi(normalise(sr), normalise(sc)), psi(normalise(er), normalise(ec)); !near(ps, eps) {
			t.Errorf("seed %d: merged categorical PSI %.6g, union %.6g", seed, ps, eps)
		}
		// And Compare on the merged profile reports those numbers.
		rep, err := Compare(ref.p, fleet, Options{Features: map[string]FeatureOptions{"temp": {Method: KS}, "mode": {Method: ChiSquare}}})
		if err != nil {
			t.Fatal(err)
		}
		if *rep.Features["temp"].KS != d || !near(*rep.Features["mode"].PValue, pv) {
			t.Errorf("seed %d: Compare reports %+v", seed, rep.Features)
		}
	}
	t.Logf("worst |merged - union|: D %.4f, W1/sd %.4f, PSI %.4f", worstD, worstW, worstPSI)
}

// TestFleetChiSquareGrowsWithRows is the demo's puzzle: each device's chi-square p is well
// above 0.05 while the fleet's is near 0. Five devices with the same small shift in the mode
// mix (47/32/21 against the reference's 50/30/20): the chi-square statistic grows with the
// number of rows for a fixed difference in shares, so 5x the rows gives 5x the statistic. The
// merged profile's p equals the p over the union of the rows: it is the truth about the fleet's
// data, not a merge error.
func TestFleetChiSquareGrowsWithRows(t *testing.T) {
	mix := func(s *side, n int, shares map[string]int) {
		for m, c := range shares {
			for range c * n / 100 {
				s.add(t, 0, m)
			}
		}
	}
	ref := newSide(t)
	mix(ref, 10000, map[string]int{"a": 50, "b": 30, "c": 20})
	var fleet *profile.Profile
	for range 5 {
		dev := newSide(t)
		mix(dev, 1000, map[string]int{"a": 47, "b": 32, "c": 21})
		rep, err := Compare(ref.p, dev.p, Options{Features: map[string]FeatureOptions{"mode": {Method: ChiSquare}}})
		if err != nil {
			t.Fatal(err)
		}
		if fr := rep.Features["mode"]; fr.Score < 0.1 || fr.Drift {
			t.Fatalf("device p %v, want a device that does not drift", fr.Score)
		}
		if fleet == nil {
			fleet = dev.p.Clone()
		} else if err := fleet.Merge(dev.p); err != nil {
			t.Fatal(err)
		}
	}
	rep, err := Compare(ref.p, fleet, Options{Features: map[string]FeatureOptions{"mode": {Method: ChiSquare}}})
	if err != nil {
		t.Fatal(err)
	}
	fr := rep.Features["mode"]
	if fr.Score > 0.001 || !fr.Drift {
		t.Fatalf("fleet p %v, want < 0.001", fr.Score)
	}
	// Per device: 30²/500 + 20²/300 + 10²/200 = 3.63 (p 0.16); fleet: 5 x 3.63 = 18.2 (p 1.1e-4).
	if math.Abs(*fr.ChiSquare-5*3.6333333333) > 1e-6 {
		t.Fatalf("fleet chi-square %v, want 5 x 3.633", *fr.ChiSquare)
	}
	t.Logf("fleet chi-square %.2f, p %.2g", *fr.ChiSquare, fr.Score)
}
