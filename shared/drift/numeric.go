package drift

import (
	"math"

	"github.com/driftline/driftline/shared/profile"
)

// psiEpsilon replaces an empty bin's share in PSI, as Evidently does, so the log stays finite.
const psiEpsilon = 1e-4

// minStdDev is the floor of the reference standard deviation that normalises W1 (Evidently's),
// so a constant reference gives a finite score.
const minStdDev = 0.001

// ksDistance returns the two-sample KS statistic D = sup |F_a - F_b| of two step CDFs.
func ksDistance(a, b profile.CDF) float64 {
	var d float64
	walk(a, b, func(_, fa, fb float64, _ float64) {
		d = max(d, math.Abs(fa-fb))
	})
	return d
}

// wasserstein1 returns W1 = integral of |F_a - F_b| over the real line.
func wasserstein1(a, b profile.CDF) float64 {
	var w float64
	walk(a, b, func(_, fa, fb, width float64) {
		w += math.Abs(fa-fb) * width
	})
	return w
}

// walk visits every distinct value x of the union of a's and b's support in ascending order,
// with F_a(x), F_b(x) and the distance to the next value (0 after the last one).
func walk(a, b profile.CDF, visit func(x, fa, fb, width float64)) {
	i, j := 0, 0
	var fa, fb float64
	na, nb := float64(a.N), float64(b.N)
	for i < len(a.Values) || j < len(b.Values) {
		var x float64
		switch {
		case j >= len(b.Values) || (i < len(a.Values) && a.Values[i] < b.Values[j]):
			x = a.Values[i]
		default:
			x = b.Values[j]
		}
		if i < len(a.Values) && a.Values[i] == x {
			fa = float64(a.Cum[i]) / na
			i++
		}
		if j < len(b.Values) && b.Values[j] == x {
			fb = float64(b.Cum[j]) / nb
			j++
		}
		next := x
		switch {
		case i < len(a.Values) && j < len(b.Values):
			next = min(a.Values[i], b.Values[j])
		case i < len(a.Values):
			next = a.Values[i]
		case j < len(b.Values):
			next = b.Values[j]
		}
		visit(x, fa, fb, next-x)
	}
}

// decileShares returns the shares of a and b in the bins cut at the reference's deciles
// (distinct edges only; bins are (edge[i-1], edge[i]]), and the bin count.
func decileShares(ref, cur profile.CDF) (rs, cs []float64) {
	edges := make([]float64, 0, 9)
	for i := 1; i <= 9; i++ {
		e := ref.Quantile(float64(i) / 10)
		if len(edges) == 0 || e > edges[len(edges)-1] {
			edges = append(edges, e)
		}
	}
	shares := func(c profile.CDF) []float64 {
		out := make([]float64, 0, len(edges)+1)
		prev := 0.0
		for _, e := range edges {
			f := c.At(e)
			out = append(out, f-prev)
			prev = f
		}
		return append(out, 1-prev)
	}
	return shares(ref), shares(cur)
}

// psi returns sum (c - r) ln(c / r) over bins, empty shares replaced by psiEpsilon.
func psi(rs, cs []float64) float64 {
	var s float64
	for i := range rs {
		r, c := rs[i], cs[i]
		if r <= 0 {
			r = psiEpsilon
		}
		if c <= 0 {
			c = psiEpsilon
		}
		s += (c - r) * math.Log(c/r)
	}
	return s
}

// numericStats returns the KS statistic, the normalised W1 and PSI of cur against ref.
func numericStats(ref, cur profile.CDF, refStd float64) (d, wNorm, p float64) {
	d = ksDistance(ref, cur)
	wNorm = wasserstein1(ref, cur) / max(refStd, minStdDev)
	rs, cs := decileShares(ref, cur)
	return d, wNorm, psi(rs, cs)
}
