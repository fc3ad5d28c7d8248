package drift

import (
	"math"

	"gonum.org/v1/gonum/stat/distuv"

	"github.com/driftline/driftline/shared/profile"
)

// otherBucket stands for the mass a frequent-items summary does not attribute to a tracked
// value; it cannot collide with a real value because real values are never cut to this.
const otherBucket = "\x00other"

// categoryCounts aligns two frequent-item summaries on the union of their tracked values,
// plus one bucket for each side's untracked remainder when either has one. With at most
// profile.DefaultFrequentK distinct values both sides are exact.
func categoryCounts(ref, cur *profile.Frequent) (rc, cc []float64) {
	idx := map[string]int{}
	slot := func(v string) int {
		i, ok := idx[v]
		if !ok {
			i = len(idx)
			idx[v] = i
			rc = append(rc, 0)
			cc = append(cc, 0)
		}
		return i
	}
	for side, f := range [2]*profile.Frequent{ref, cur} {
		addTo := func(i int, c uint64) {
			if side == 0 {
				rc[i] += float64(c)
			} else {
				cc[i] += float64(c)
			}
		}
		var tracked uint64
		for _, it := range f.Items() {
			addTo(slot(it.Value), it.Count)
			tracked += it.Count
		}
		if rest := f.Total() - tracked; rest > 0 {
			addTo(slot(otherBucket), rest)
		}
	}
	return rc, cc
}

// chiSquareP returns the p-value of Pearson's chi-square test of observed counts cur against
// expected = reference share x current total (Evidently's construction), with categories - 1
// degrees of freedom. A category seen now but never in the reference makes the statistic
// infinite and the p-value 0.
func chiSquareP(rc, cc []float64) (stat, p float64) {
	var rn, cn float64
	for i := range rc {
		rn += rc[i]
		cn += cc[i]
	}
	k := 0
	for i := range rc {
		if rc[i] == 0 && cc[i] == 0 {
			continue
		}
		k++
		e := rc[i] / rn * cn
		if e == 0 {
			return math.Inf(1), 0
		}
		stat += (cc[i] - e) * (cc[i] - e) / e
	}
	if k < 2 {
		return 0, 1
	}
	return stat, distuv.ChiSquared{K: float64(k - 1)}.Survival(stat)
}

// categories counts the categories seen on either side.
func categories(rc, cc []float64) int {
	k := 0
	for i := range rc {
		if rc[i] != 0 || cc[i] != 0 {
			k++
		}
	}
	return k
}

// jensenShannon returns the Jensen-Shannon distance (square root of the divergence, natural
// log) of the two count vectors' normalised shares, as scipy.spatial.distance.jensenshannon.
func jensenShannon(rc, cc []float64) float64 {
	var rn, cn float64
	for i := range rc {
		rn += rc[i]
		cn += cc[i]
	}
	var js float64
	for i := range rc {
		p, q := rc[i]/rn, cc[i]/cn
		m := (p + q) / 2
		if p > 0 {
			js += p * math.Log(p/m)
		}
		if q > 0 {
			js += q * math.Log(q/m)
		}
	}
	return math.Sqrt(max(js/2, 0))
}

// sharesToCounts turns bin shares into counts for the categorical tests on numeric features.
func sharesToCounts(s []float64, n uint64) []float64 {
	out := make([]float64, len(s))
	for i, v := range s {
		out[i] = math.Round(v * float64(n))
	}
	return out
}
