package profile

import "math"

// moments holds count, extremes, a compensated sum and Welford's (mean, M2) for one numeric
// column. The mean reported is sum/count, with the sum kept by Neumaier's compensated summation,
// so merging in any order or grouping gives the same mean whenever the sum is exactly
// representable, and otherwise differs by a few ulps. M2 merges with Chan et al.'s parallel
// formula (Chan, Golub, LeVeque 1979).
type moments struct {
	n         uint64
	min, max  float64
	sum, comp float64 // Neumaier: true sum ~ sum + comp
	wmean, m2 float64 // Welford running mean and sum of squared deviations
}

func (m *moments) add(x float64) {
	m.n++
	if m.n == 1 {
		m.min, m.max = x, x
	} else {
		m.min = min(m.min, x)
		m.max = max(m.max, x)
	}
	m.addSum(x)
	d := x - m.wmean
	m.wmean += d / float64(m.n)
	m.m2 += d * (x - m.wmean)
}

func (m *moments) addSum(x float64) {
	t := m.sum + x
	if math.Abs(m.sum) >= math.Abs(x) {
		m.comp += (m.sum - t) + x
	} else {
		m.comp += (x - t) + m.sum
	}
	m.sum = t
}

func (m *moments) merge(o *moments) {
	if o.n == 0 {
		return
	}
	if m.n == 0 {
		*m = *o
		return
	}
	na, nb := float64(m.n), float64(o.n)
	n := na + nb
	d := o.wmean - m.wmean
	m.m2 += o.m2 + d*d*na*nb/n
	m.wmean += d * nb / n
	m.n += o.n
	m.min = min(m.min, o.min)
	m.max = max(m.max, o.max)
	m.addSum(o.sum)
	m.addSum(o.comp)
}

func (m *moments) mean() float64 {
	if m.n == 0 {
		return math.NaN()
	}
	return (m.sum + m.comp) / float64(m.n)
}

func (m *moments) variance() float64 {
	if m.n == 0 {
		return math.NaN()
	}
	return max(m.m2, 0) / float64(m.n)
}
