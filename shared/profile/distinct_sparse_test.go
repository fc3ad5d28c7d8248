package profile

import (
	"bytes"
	"math/rand/v2"
	"runtime"
	"testing"
)

// forcedDense returns d's registers in the dense form, whatever form d holds them in.
func forcedDense(d *Distinct) Distinct {
	if d.empty() {
		return Distinct{}
	}
	regs := make([]uint8, hllM)
	d.each(func(i int, r uint8) { regs[i] = r })
	return Distinct{regs: regs}
}

// referenceRegs is the dense register array of the hashes, computed directly.
func referenceRegs(hs []uint64) []uint8 {
	regs := make([]uint8, hllM)
	for _, x := range hs {
		var d Distinct
		d.regs = regs
		d.insertHash(x)
	}
	return regs
}

// TestDistinctSparseSameAsDense: the sparse form holds exactly the registers the dense form
// would, so estimates, merges (across forms, both ways) and encodings are the same; a decoded
// sketch encodes to the same bytes.
func TestDistinctSparseSameAsDense(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var prev Distinct
	for _, n := range []int{0, 1, 2, 30, 255, 256, 257, 300, 1000, 1025, 5000} {
		hs := make([]uint64, n)
		var d Distinct
		for i := range hs {
			hs[i] = rng.Uint64()
			d.insertHash(hs[i])
			if i%3 == 0 {
				d.insertHash(hs[i]) // a repeat changes nothing
			}
		}
		want := referenceRegs(hs)
		dense := forcedDense(&d)
		if n > 0 && !bytes.Equal(dense.regs, want) {
			t.Fatalf("n=%d: registers differ from the dense form's", n)
		}
		set := 0
		for _, r := range want {
			if r != 0 {
				set++
			}
		}
		if sparse := d.regs == nil; n > 0 && sparse != (set <= sparseMax) {
			t.Errorf("n=%d (%d registers set): sparse %v, want sparse up to %d", n, set, sparse, sparseMax)
		}
		if d.Estimate() != dense.Estimate() {
			t.Fatalf("n=%d: estimate %d, dense %d", n, d.Estimate(), dense.Estimate())
		}
		enc, denc := d.appendTo(nil), dense.appendTo(nil)
		if n > 0 && !bytes.Equal(enc, denc) {
			t.Fatalf("n=%d: encoding differs from the dense form's", n)
		}
		var back Distinct
		r := &reader{b: enc}
		if err := r.distinct(&back, uint64(n)); err != nil {
			t.Fatalf("n=%d: decode: %v", n, err)
		}
		if !bytes.Equal(back.appendTo(nil), enc) {
			t.Fatalf("n=%d: decoded sketch encodes differently", n)
		}
		// Merges with the previous size's sketch, in both orders and across forms.
		u := forcedDense(&prev)
		u.merge(&dense)
		for _, pair := range [][2]Distinct{{prev.clone(), d.clone()}, {d.clone(), prev.clone()}, {forcedDense(&prev), d.clone()}, {d.clone(), forcedDense(&prev)}} {
			a, b := pair[0], pair[1]
			a.merge(&b)
			if !bytes.Equal(a.appendTo(nil), u.appendTo(nil)) || a.Estimate() != u.Estimate() {
				t.Fatalf("n=%d: merge with the previous sketch differs from the dense union", n)
			}
		}
		prev = d
	}
}

// TestDistinctWindowMemory: a column's distinct sketch over a window of 60 rows (a device's
// minute at a reading a second) holds a few hundred bytes, not the dense form's 4,096.
func TestDistinctWindowMemory(t *testing.T) {
	const n = 200
	ds := make([]Distinct, n)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := range ds {
		for j := range 60 {
			ds[i].insertHash(hashFloat(float64(i*1000 + j)))
		}
	}
	runtime.ReadMemStats(&after)
	if per := (after.TotalAlloc - before.TotalAlloc) / n; per > 1024 {
		t.Fatalf("a 60-row column sketch allocated %d bytes; want at most 1 KiB", per)
	}
	runtime.KeepAlive(ds)
}
