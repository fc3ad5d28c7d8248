package profile

import (
	"cmp"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// exactRank returns the fraction of sorted values <= x.
func exactRank(sorted []float64, x float64) float64 {
	i, _ := slices.BinarySearch(sorted, math.Nextafter(x, math.Inf(1)))
	return float64(i) / float64(len(sorted))
}

// maxRankError compares the sketch's CDF with the exact one at every value of the sample.
func maxRankError(t *testing.T, q *Quantiles, vals []float64) float64 {
	t.Helper()
	sorted := slices.Clone(vals)
	slices.Sort(sorted)
	cdf := q.CDF()
	if cdf.N != uint64(len(vals)) || cdf.Cum[len(cdf.Cum)-1] != cdf.N {
		t.Fatalf("weight %d / %d, want %d", cdf.Cum[len(cdf.Cum)-1], cdf.N, len(vals))
	}
	worst := 0.0
	for i := 0; i < len(sorted); i += max(1, len(sorted)/2000) {
		x := sorted[i]
		worst = max(worst, math.Abs(cdf.At(x)-exactRank(sorted, x)))
	}
	return worst
}

func TestQuantilesExactWhenSmall(t *testing.T) {
	q := newQuantiles(DefaultQuantileK)
	r := rand.New(rand.NewPCG(1, 2))
	vals := make([]float64, DefaultQuantileK)
	for i := range vals {
		vals[i] = r.NormFloat64()
		q.add(vals[i])
	}
	if e := maxRankError(t, q, vals); e != 0 {
		t.Fatalf("sketch of %d values should be exact, rank error %v", len(vals), e)
	}
	slices.Sort(vals)
	cdf := q.CDF()
	if got := cdf.Quantile(0.5); got != vals[len(vals)/2-1] {
		t.Fatalf("median %v, want %v", got, vals[len(vals)/2-1])
	}
}

func TestQuantilesRankError(t *testing.T) {
	gens := map[string]func(r *rand.Rand) float64{
		"normal":      func(r *rand.Rand) float64 { return r.NormFloat64() },
		"exponential": func(r *rand.Rand) float64 { return r.ExpFloat64() },
		"discrete":    func(r *rand.Rand) float64 { return float64(r.IntN(50)) },
		"sorted":      nil,
	}
	for name, gen := range gens {
		for _, n := range []int{1000, 10000, 100000} {
			r := rand.New(rand.NewPCG(uint64(n), 7))
			q := newQuantiles(DefaultQuantileK)
			vals := make([]float64, n)
			for i := range vals {
				if gen == nil {
					vals[i] = float64(i)
				} else {
					vals[i] = gen(r)
				}
				q.add(vals[i])
			}
			e := maxRankError(t, q, vals)
			t.Logf("%s n=%d retained=%d rank error %.4f", name, n, q.Retained(), e)
			if e > 0.01 {
				t.Errorf("%s n=%d: rank error %.4f over 0.01", name, n, e)
			}
		}
	}
}

func TestQuantilesMergeRankError(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	var all []float64
	total := newQuantiles(DefaultQuantileK)
	for part := range 50 {
		q := newQuantiles(DefaultQuantileK)
		for range 1000 + part*37 {
			x := r.NormFloat64() + float64(part%5)
			all = append(all, x)
			q.add(x)
		}
		total.merge(q)
	}
	if total.size >= total.maxSize {
		t.Fatalf("merged sketch over capacity: %d >= %d", total.size, total.maxSize)
	}
	e := maxRankError(t, total, all)
	t.Logf("merged 50 sketches of %d values: retained %d, rank error %.4f", len(all), total.Retained(), e)
	if e > 0.01 {
		t.Fatalf("merged rank error %.4f over 0.01", e)
	}
}

// TestQuantilesCDFKept: a sketch that does not change sorts once: later CDF calls allocate
// nothing (hub/fleetdrift compares every device window with the same reference sketch), and a
// change (add, merge) is seen by the next call.
func TestQuantilesCDFKept(t *testing.T) {
	q := newQuantiles(DefaultQuantileK)
	for i := range 5000 {
		q.add(float64(i % 997))
	}
	first := q.CDF()
	if allocs := testing.AllocsPerRun(20, func() { _ = q.CDF() }); allocs != 0 {
		t.Fatalf("CDF of an unchanged sketch allocated %v times per call, want 0", allocs)
	}
	q.add(5000)
	if c := q.CDF(); c.N != first.N+1 || c.Values[len(c.Values)-1] != 5000 {
		t.Fatalf("after add: N %d (want %d), largest %v (want 5000)", c.N, first.N+1, c.Values[len(c.Values)-1])
	}
	o := newQuantiles(DefaultQuantileK)
	o.add(-1)
	q.merge(o)
	if c := q.CDF(); c.N != first.N+2 || c.Values[0] != -1 {
		t.Fatalf("after merge: N %d (want %d), smallest %v (want -1)", c.N, first.N+2, c.Values[0])
	}
	if c := q.clone().CDF(); c.N != first.N+2 {
		t.Fatalf("clone: N %d, want %d", c.N, first.N+2)
	}
}

// cdfBySort is the CDF by definition, as CDF computed it before cdfOf: every retained value with
// its level's weight, sorted.
func cdfBySort(q *Quantiles) CDF {
	type wv struct {
		v float64
		w uint64
	}
	all := make([]wv, 0, q.size)
	for h, lv := range q.levels {
		for _, v := range lv {
			all = append(all, wv{v, 1 << h})
		}
	}
	slices.SortFunc(all, func(a, b wv) int { return cmp.Compare(a.v, b.v) })
	c := CDF{N: q.n, Values: make([]float64, 0, len(all)), Cum: make([]uint64, 0, len(all))}
	var cum uint64
	for i, e := range all {
		cum += e.w
		if i > 0 && e.v == all[i-1].v {
			c.Cum[len(c.Cum)-1] = cum
			continue
		}
		c.Values = append(c.Values, e.v)
		c.Cum = append(c.Cum, cum)
	}
	return c
}

// TestQuantilesCDFMatchesDefinition: the merged CDF equals the sorted one, on sketches built by
// adds (sorted upper levels), by merges (unsorted levels) and with repeated values.
func TestQuantilesCDFMatchesDefinition(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, tc := range []struct {
		name  string
		n     int
		value func() float64
	}{
		{"small", 50, func() float64 { return r.NormFloat64() }},
		{"compacted", 20000, func() float64 { return r.NormFloat64() * 10 }},
		{"repeats", 20000, func() float64 { return float64(r.IntN(37)) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q, o := newQuantiles(DefaultQuantileK), newQuantiles(DefaultQuantileK)
			for range tc.n {
				q.add(tc.value())
				o.add(tc.value())
			}
			for _, s := range []*Quantiles{q, func() *Quantiles { m := q.clone(); m.merge(o); return m }()} {
				got, want := s.cdfOf(), cdfBySort(s)
				if got.N != want.N || !slices.Equal(got.Values, want.Values) || !slices.Equal(got.Cum, want.Cum) {
					t.Fatalf("CDF differs from its definition: %d/%d values, N %d/%d", len(got.Values), len(want.Values), got.N, want.N)
				}
			}
		})
	}
}
