package profile

import (
	"math"
	"strconv"
	"testing"

	"github.com/cespare/xxhash/v2"
)

func TestDistinctEstimate(t *testing.T) {
	for _, n := range []int{0, 1, 10, 100, 1000, 10000, 100000, 1000000} {
		var d Distinct
		for i := range n {
			d.insertHash(hashFloat(float64(i)))
			d.insertHash(hashFloat(float64(i))) // duplicates change nothing
		}
		got := d.Estimate()
		rel := math.Abs(float64(got)-float64(n)) / math.Max(1, float64(n))
		t.Logf("n=%d estimate=%d rel=%.4f", n, got, rel)
		if rel > 0.05 { // > 3 standard errors of 1.6%
			t.Errorf("n=%d: estimate %d off by %.1f%%", n, got, 100*rel)
		}
	}
}

func TestDistinctMergeIsUnion(t *testing.T) {
	var a, b, u Distinct
	for i := range 30000 {
		h := xxhash.Sum64String(strconv.Itoa(i))
		if i < 20000 {
			a.insertHash(h)
		}
		if i >= 10000 {
			b.insertHash(h)
		}
		u.insertHash(h)
	}
	ab := a.clone()
	ab.merge(&b)
	ba := b.clone()
	ba.merge(&a)
	if string(ab.regs) != string(u.regs) || string(ba.regs) != string(u.regs) {
		t.Fatal("merged registers differ from the union's")
	}
	if hashFloat(0) != hashFloat(math.Copysign(0, -1)) {
		t.Fatal("+0 and -0 must hash alike")
	}
}
