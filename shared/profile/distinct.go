package profile

import (
	"math"
	"math/bits"
)

// hllP is the HyperLogLog precision: 2^12 registers give a standard error of 1.04/64 = 1.6%.
const hllP = 12

const (
	hllM = 1 << hllP
	hllQ = 64 - hllP // largest register value is hllQ+1
)

// Distinct is a HyperLogLog distinct-count sketch (Flajolet et al. 2007) with 4,096 six-bit
// registers held in bytes, estimated with Ertl's improved raw estimator (Ertl 2017, "New
// cardinality estimation algorithms for HyperLogLog sketches", algorithm 6), which needs no
// empirical bias tables and is accurate from 0 up. Merge is a register-wise max, so it is
// exactly associative, commutative and idempotent.
//
// Values are hashed with 64-bit hashes that do not depend on the process (xxhash for strings,
// a SplitMix64 mix of the bits for numbers), so sketches from different devices merge.
type Distinct struct {
	regs []uint8 // nil until the first insert
}

func (d *Distinct) insertHash(x uint64) {
	if d.regs == nil {
		d.regs = make([]uint8, hllM)
	}
	idx := x >> (64 - hllP)
	w := x<<hllP | 1<<(hllP-1)
	r := uint8(bits.LeadingZeros64(w) + 1)
	if r > d.regs[idx] {
		d.regs[idx] = r
	}
}

func (d *Distinct) merge(o *Distinct) {
	if o.regs == nil {
		return
	}
	if d.regs == nil {
		d.regs = make([]uint8, hllM)
	}
	for i, r := range o.regs {
		if r > d.regs[i] {
			d.regs[i] = r
		}
	}
}

func (d *Distinct) clone() Distinct {
	if d.regs == nil {
		return Distinct{}
	}
	return Distinct{regs: append([]uint8(nil), d.regs...)}
}

// Estimate returns the estimated number of distinct values inserted.
func (d *Distinct) Estimate() uint64 {
	if d.regs == nil {
		return 0
	}
	var c [hllQ + 2]int
	for _, r := range d.regs {
		c[r]++
	}
	m := float64(hllM)
	z := m * hllTau(1-float64(c[hllQ+1])/m)
	for k := hllQ; k >= 1; k-- {
		z = 0.5 * (z + float64(c[k]))
	}
	z += m * hllSigma(float64(c[0])/m)
	alphaInf := 1 / (2 * math.Ln2)
	return uint64(math.Round(alphaInf * m * m / z))
}

func hllSigma(x float64) float64 {
	if x == 1 {
		return math.Inf(1)
	}
	y, z := 1.0, x
	for {
		x *= x
		zp := z
		z += x * y
		y += y
		if z == zp {
			return z
		}
	}
}

func hllTau(x float64) float64 {
	if x == 0 || x == 1 {
		return 0
	}
	y, z := 1.0, 1-x
	for {
		x = math.Sqrt(x)
		zp := z
		y *= 0.5
		z -= (1 - x) * (1 - x) * y
		if z == zp {
			return z / 3
		}
	}
}

// hashFloat hashes a number for the distinct sketch; +0 and -0 hash alike.
func hashFloat(x float64) uint64 {
	if x == 0 {
		x = 0
	}
	return mix64(math.Float64bits(x) ^ 0x5bd1e9955bd1e995)
}
