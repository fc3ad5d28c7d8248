package profile

import (
	"math"
	"slices"
	"sync/atomic"
)

// DefaultQuantileK is the KLL accuracy parameter of numeric columns. With k = 400 the sketch is
// exact up to 400 values and its rank error stays under about 0.8% (99% of the time) beyond; it
// retains at most about 3k values (24 KiB plain, far less for short windows).
const DefaultQuantileK = 400

// kllC is KLL's capacity decay between levels (the paper's c = 2/3).
const kllC = 2.0 / 3.0

// kllSeed starts the compaction coin; the state is then stirred with the data (see compact).
const kllSeed uint64 = 0x9E3779B97F4A7C15

// Quantiles is a KLL quantile sketch (Karnin, Lang, Liberty 2016, "Optimal Quantile Approximation
// in Streams"), in the lazy-compaction form of the authors' reference code. Level h holds values
// of weight 2^h; when the sketch is full, the lowest full level is sorted and every other value
// (odd or even, by a coin) moves up one level. Total weight always equals N exactly.
//
// The coin comes from a xorshift state seeded with a constant and stirred with the data being
// compacted, so the same values in the same order give the same sketch byte for byte, while
// sketches of different streams do not share coin sequences (which would bias a fleet merge).
//
// A Quantiles is not safe for concurrent use, except that any number of goroutines may read one
// that no one changes (CDF included).
type Quantiles struct {
	k       int
	n       uint64
	levels  [][]float64
	caps    []int // capacity per level for the current height
	size    int   // values retained over all levels
	maxSize int   // sum of caps: compaction starts when size reaches it
	rng     uint64
	scr     []float64 // merge scratch, swapped with a level buffer
	// cdf is CDF's result, kept until the next add or merge: a reference profile's sketch is
	// compared with every device window (hub/fleetdrift) and sorted once, not once per window.
	cdf atomic.Pointer[CDF]
}

func newQuantiles(k int) *Quantiles {
	q := &Quantiles{k: k, rng: kllSeed}
	q.grow()
	return q
}

// K returns the sketch's accuracy parameter.
func (q *Quantiles) K() int { return q.k }

// N returns the number of values the sketch summarises (its total weight).
func (q *Quantiles) N() uint64 { return q.n }

// Retained returns the number of values the sketch holds.
func (q *Quantiles) Retained() int { return q.size }

func (q *Quantiles) grow() {
	q.levels = append(q.levels, nil)
	q.setCaps()
}

func (q *Quantiles) setCaps() {
	h := len(q.levels)
	q.caps = q.caps[:0]
	q.maxSize = 0
	for i := range h {
		depth := h - i - 1
		c := int(math.Ceil(math.Pow(kllC, float64(depth))*float64(q.k))) + 1
		if c < 2 {
			c = 2
		}
		q.caps = append(q.caps, c)
		q.maxSize += c
	}
}

// add inserts one finite value. Amortised O(log k), no allocation once level buffers have grown.
func (q *Quantiles) add(x float64) {
	if q.cdf.Load() != nil {
		q.cdf.Store(nil)
	}
	q.levels[0] = append(q.levels[0], x)
	q.size++
	q.n++
	if q.size >= q.maxSize {
		q.compress()
	}
}

func (q *Quantiles) compress() {
	for h := 0; h < len(q.levels); h++ {
		if len(q.levels[h]) >= q.caps[h] {
			if h+1 >= len(q.levels) {
				q.grow()
			}
			q.compact(h)
			if q.size < q.maxSize {
				return
			}
		}
	}
}

// compact sorts level h and promotes every other value to level h+1. With an odd count the
// smallest value stays behind, so weight is conserved exactly. Promoted runs are merged into
// level h+1 in order, so levels above 0 stay sorted and only level 0 (or a level filled by a
// profile merge) pays for a sort.
func (q *Quantiles) compact(h int) {
	lv := q.levels[h]
	if !slices.IsSorted(lv) {
		slices.Sort(lv)
	}
	start := len(lv) % 2
	left := lv[0]
	q.rng ^= math.Float64bits(lv[len(lv)/2]) ^ q.n
	q.rng = mix64(q.rng)
	off := start + int(q.rng>>63)
	run := lv[:0] // in place: the write index never passes the read index
	for i := off; i < len(lv); i += 2 {
		run = append(run, lv[i])
	}
	q.mergeUp(h+1, run)
	q.size -= (len(lv) - start) / 2
	q.levels[h] = lv[:start]
	if start == 1 {
		q.levels[h][0] = left
	}
}

// mergeUp merges the sorted run into level h through the scratch buffer, then swaps them.
func (q *Quantiles) mergeUp(h int, run []float64) {
	up := q.levels[h]
	out := q.scr[:0]
	i, j := 0, 0
	for i < len(up) && j < len(run) {
		if run[j] < up[i] {
			out = append(out, run[j])
			j++
		} else {
			out = append(out, up[i])
			i++
		}
	}
	out = append(out, up[i:]...)
	out = append(out, run[j:]...)
	q.levels[h], q.scr = out, up[:0]
}

// merge adds o's values into q. Both must have the same k.
func (q *Quantiles) merge(o *Quantiles) {
	q.cdf.Store(nil)
	for len(q.levels) < len(o.levels) {
		q.grow()
	}
	for h, lv := range o.levels {
		q.levels[h] = append(q.levels[h], lv...)
		q.size += len(lv)
	}
	q.n += o.n
	q.rng = mix64(q.rng ^ o.rng)
	for q.size >= q.maxSize { // some level is at capacity, so compress always makes progress
		q.compress()
	}
}

func (q *Quantiles) clone() *Quantiles {
	c := &Quantiles{k: q.k, n: q.n, size: q.size, maxSize: q.maxSize, rng: q.rng}
	c.levels = make([][]float64, len(q.levels))
	for i, lv := range q.levels {
		c.levels[i] = slices.Clone(lv)
	}
	c.caps = slices.Clone(q.caps)
	return c
}

// CDF is the step distribution function a sketch describes: Values ascending and distinct,
// Cum[i] the total weight of values <= Values[i], Cum[len-1] == N.
type CDF struct {
	// Values are the distinct retained values, ascending.
	Values []float64
	// Cum[i] is the total weight of values <= Values[i].
	Cum []uint64
	// N is the total weight (the number of values summarised).
	N uint64
}

// CDF returns the sketch's distribution as a sorted step function. The first call after a change
// sorts and allocates; later ones return the same result (its slices are shared: read them, do
// not change them).
func (q *Quantiles) CDF() CDF {
	if c := q.cdf.Load(); c != nil {
		return *c
	}
	c := q.cdfOf()
	q.cdf.Store(&c)
	return c
}

// cdfOf computes CDF: each level in order (levels above 0 usually are already: compaction merges
// sorted runs into them; level 0 and levels a profile merge appended to are sorted here, on a
// copy), then merged by value, the weight of level h being 2^h. A few levels' heads compared per
// value cost less than sorting every retained value with its weight (the previous form, a third
// of a fleet drift comparison).
func (q *Quantiles) cdfOf() CDF {
	runs := make([][]float64, len(q.levels))
	for h, lv := range q.levels {
		if !slices.IsSorted(lv) {
			lv = slices.Clone(lv)
			slices.Sort(lv)
		}
		runs[h] = lv
	}
	next := make([]int, len(runs))
	c := CDF{N: q.n, Values: make([]float64, 0, q.size), Cum: make([]uint64, 0, q.size)}
	var cum uint64
	for {
		best := -1
		for h, r := range runs {
			if next[h] < len(r) && (best < 0 || r[next[h]] < runs[best][next[best]]) {
				best = h
			}
		}
		if best < 0 {
			return c
		}
		v := runs[best][next[best]]
		next[best]++
		cum += 1 << best
		if n := len(c.Values); n > 0 && c.Values[n-1] == v {
			c.Cum[n-1] = cum
			continue
		}
		c.Values = append(c.Values, v)
		c.Cum = append(c.Cum, cum)
	}
}

// At returns the fraction of weight at or below x (0 for an empty CDF).
func (c CDF) At(x float64) float64 {
	if c.N == 0 {
		return 0
	}
	i, found := slices.BinarySearch(c.Values, x)
	if found {
		return float64(c.Cum[i]) / float64(c.N)
	}
	if i == 0 {
		return 0
	}
	return float64(c.Cum[i-1]) / float64(c.N)
}

// Quantile returns the smallest retained value whose cumulative fraction reaches phi (clamped to
// [0, 1]); NaN for an empty CDF.
func (c CDF) Quantile(phi float64) float64 {
	if c.N == 0 {
		return math.NaN()
	}
	phi = min(max(phi, 0), 1)
	target := phi * float64(c.N)
	i, _ := slices.BinarySearchFunc(c.Cum, target, func(cum uint64, t float64) int {
		if float64(cum) < t {
			return -1
		}
		return 1
	})
	if i >= len(c.Values) {
		i = len(c.Values) - 1
	}
	return c.Values[i]
}

// mix64 is the SplitMix64 finaliser: a bijective 64-bit mixer.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
