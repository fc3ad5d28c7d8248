package drift

import "math"

// ksPValue returns the asymptotic p-value of a two-sample KS statistic d for sample sizes n
// and m: Q_KS(lambda) with lambda = (sqrt(ne) + 0.12 + 0.11/sqrt(ne)) d and ne = nm/(n+m), where
// Q_KS(x) = 2 sum_{j>=1} (-1)^(j-1) exp(-2 j^2 x^2) is the Kolmogorov distribution's survival
// function. The small-sample correction is Stephens' (1970), as given in Press et al.,
// Numerical Recipes, 3rd ed., section 14.3.3 (eq. 14.3.18 and the function qks).
func ksPValue(d float64, n, m uint64) float64 {
	if n == 0 || m == 0 {
		return 1
	}
	ne := float64(n) * float64(m) / float64(n+m)
	sq := math.Sqrt(ne)
	return kolmogorovQ((sq + 0.12 + 0.11/sq) * d)
}

// kolmogorovQ is Q_KS(x) = 1 - K(x), the Kolmogorov survival function. For small x the
// alternating series converges slowly, so it uses the dual form of the CDF:
// K(x) = sqrt(2 pi)/x sum_{j>=1} exp(-(2j-1)^2 pi^2 / (8 x^2)).
func kolmogorovQ(x float64) float64 {
	switch {
	case x <= 0:
		return 1
	case x < 1.18:
		y := math.Exp(-math.Pi * math.Pi / (8 * x * x))
		var s float64
		for j := 1; j <= 8; j++ {
			s += math.Pow(y, float64((2*j-1)*(2*j-1)))
		}
		return min(1, max(0, 1-math.Sqrt(2*math.Pi)/x*s))
	default:
		var s float64
		sign := 1.0
		for j := 1; j <= 100; j++ {
			t := math.Exp(-2 * float64(j*j) * x * x)
			s += sign * t
			if t < 1e-17 {
				break
			}
			sign = -sign
		}
		return min(1, max(0, 2*s))
	}
}
