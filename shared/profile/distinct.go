package profile

import (
	"math"
	"math/bits"
	"slices"
	"sort"
)

// hllP is the HyperLogLog precision: 2^12 registers give a standard error of 1.04/64 = 1.6%.
const hllP = 12

const (
	hllM = 1 << hllP
	hllQ = 64 - hllP // largest register value is hllQ+1
)

// sparseMax is the most registers a Distinct keeps in its sparse form (4 bytes each, a quarter
// of the dense form's 4,096 bytes); one more and it becomes dense. A window of a few hundred
// rows, the common case on a device, never needs the dense form for any column.
const sparseMax = hllM / 16

// Distinct is a HyperLogLog distinct-count sketch (Flajolet et al. 2007) with 4,096 six-bit
// registers held in bytes, estimated with Ertl's improved raw estimator (Ertl 2017, "New
// cardinality estimation algorithms for HyperLogLog sketches", algorithm 6), which needs no
// empirical bias tables and is accurate from 0 up. Merge is a register-wise max, so it is
// exactly associative, commutative and idempotent.
//
// Values are hashed with 64-bit hashes that do not depend on the process (xxhash for strings,
// a SplitMix64 mix of the bits for numbers), so sketches from different devices merge.
//
// While at most sparseMax registers are set it holds only those (index and value, sorted by
// index), as DataSketches' HLL does in its list and set modes: a window's profile of tens of
// rows held 4 KiB per column for a few dozen registers. The registers, hence every estimate,
// merge and encoding, are the same in both forms.
type Distinct struct {
	regs   []uint8  // dense: hllM registers; nil while sparse or empty
	sparse []uint32 // sparse: idx<<8 | value of the set registers, by idx; nil: empty (with regs nil)
}

func (d *Distinct) insertHash(x uint64) {
	idx := x >> (64 - hllP)
	w := x<<hllP | 1<<(hllP-1)
	d.set(int(idx), uint8(bits.LeadingZeros64(w)+1))
}

// set raises register idx to r if it is lower.
func (d *Distinct) set(idx int, r uint8) {
	if d.regs != nil {
		if r > d.regs[idx] {
			d.regs[idx] = r
		}
		return
	}
	i := sort.Search(len(d.sparse), func(i int) bool { return int(d.sparse[i]>>8) >= idx })
	if i < len(d.sparse) && int(d.sparse[i]>>8) == idx {
		if r > uint8(d.sparse[i]) {
			d.sparse[i] = uint32(idx)<<8 | uint32(r)
		}
		return
	}
	if len(d.sparse) == sparseMax {
		d.densify()
		d.regs[idx] = r
		return
	}
	d.sparse = slices.Insert(d.sparse, i, uint32(idx)<<8|uint32(r))
}

// densify moves the registers into the dense form.
func (d *Distinct) densify() {
	d.regs = make([]uint8, hllM)
	for _, e := range d.sparse {
		d.regs[e>>8] = uint8(e)
	}
	d.sparse = nil
}

// empty reports whether the sketch was never given a value (nor decoded from one that was).
func (d *Distinct) empty() bool { return d.regs == nil && d.sparse == nil }

// each calls f with every set register, by index.
func (d *Distinct) each(f func(idx int, r uint8)) {
	if d.regs == nil {
		for _, e := range d.sparse {
			f(int(e>>8), uint8(e))
		}
		return
	}
	for i, r := range d.regs {
		if r != 0 {
			f(i, r)
		}
	}
}

func (d *Distinct) merge(o *Distinct) {
	if o.empty() {
		return
	}
	if d.empty() {
		d.sparse = make([]uint32, 0, min(len(o.sparse), sparseMax))
	}
	if o.regs != nil && d.regs == nil {
		d.densify()
	}
	o.each(d.set)
}

func (d *Distinct) clone() Distinct {
	switch {
	case d.regs != nil:
		return Distinct{regs: append([]uint8(nil), d.regs...)}
	case d.sparse != nil:
		return Distinct{sparse: append(make([]uint32, 0, len(d.sparse)), d.sparse...)}
	}
	return Distinct{}
}

// Estimate returns the estimated number of distinct values inserted.
func (d *Distinct) Estimate() uint64 {
	if d.empty() {
		return 0
	}
	var c [hllQ + 2]int
	set := 0
	d.each(func(_ int, r uint8) { c[r]++; set++ })
	c[0] = hllM - set
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
