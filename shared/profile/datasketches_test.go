package profile

// The sketches of this package measured against Apache DataSketches for Go
// (github.com/apache/datasketches-go) on the same streams: rank error
// (KLL), cardinality error (HLL), frequent-item error, serialized size, and, in the benchmarks,
// time and allocations per update and per merge. The figures and the decision they support are
// in docs/benchmarks.md and docs/dependencies.md; reproduce them with
//
//	go test -run TestDataSketches -bench Sketch -benchmem -v ./shared/profile/

import (
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"

	"github.com/apache/datasketches-go/common"
	dshll "github.com/apache/datasketches-go/hll"
	dskll "github.com/apache/datasketches-go/kll"
	"github.com/cespare/xxhash/v2"

	"github.com/driftline/driftline/shared/zstdx"
)

// Parameters chosen for parity with ours: the same k for KLL (400, m = 8 as in DataSketches'
// default), the same 2^12 registers for HLL (8-bit registers like ours, so update work is
// comparable). Frequent items compare the Misra-Gries summary of EncodingVersion 1 (k = 128,
// misragries_test.go) with Frequent, the DataSketches sketch profiles use since version 2
// (2^8 map, up to 192 counters, purging about half).
const (
	dsKLLM   = 8
	dsHLLLgK = hllP
)

func newDSKLL(t testing.TB) *dskll.ItemsSketch[float64] {
	s, err := dskll.NewKllItemsSketch[float64](DefaultQuantileK, dsKLLM, common.ItemSketchDoubleComparator(false), common.ItemSketchDoubleSerDe{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func newDSHLL(t testing.TB) dshll.HllSketch {
	s, err := dshll.NewHllSketch(dsHLLLgK, dshll.TgtHllTypeHll8)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// numericStreams are the KLL test streams: name and n values.
func numericStreams(n int) map[string][]float64 {
	r := rand.New(rand.NewPCG(7, 7))
	out := map[string][]float64{}
	normal, expo, discrete, sorted := make([]float64, n), make([]float64, n), make([]float64, n), make([]float64, n)
	for i := range n {
		normal[i] = r.NormFloat64()
		expo[i] = r.ExpFloat64()
		discrete[i] = float64(r.IntN(20))
		sorted[i] = float64(i)
	}
	out["normal"], out["exponential"], out["discrete"], out["sorted"] = normal, expo, discrete, sorted
	return out
}

// rankErrorOf is the largest |estimated - exact| inclusive rank over about 2,000 query points
// taken from the stream itself (as maxRankError in quantiles_test.go).
func rankErrorOf(vals []float64, rank func(x float64) float64) float64 {
	sorted := slices.Clone(vals)
	slices.Sort(sorted)
	worst := 0.0
	for i := 0; i < len(sorted); i += max(1, len(sorted)/2000) {
		x := sorted[i]
		worst = max(worst, math.Abs(rank(x)-exactRank(sorted, x)))
	}
	return worst
}

func dsRank(t testing.TB, s *dskll.ItemsSketch[float64]) func(float64) float64 {
	return func(x float64) float64 {
		r, err := s.GetRank(x, true)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
}

func zipfStream(n, distinct int) []string {
	r := rand.New(rand.NewPCG(11, 11))
	z := rand.NewZipf(r, 1.1, 1, uint64(distinct-1))
	out := make([]string, n)
	for i := range out {
		out[i] = "item-" + strconv.FormatUint(z.Uint64(), 10)
	}
	return out
}

// TestDataSketchesComparison computes the accuracy and size figures of docs/benchmarks.md. It
// fails if either library misses its own documented bound on these streams, so a figure copied
// from its log comes from sketches that work.
func TestDataSketchesComparison(t *testing.T) {
	if testing.Short() {
		t.Skip("comparison with DataSketches skipped in -short mode")
	}
	const n = 100_000
	t.Run("kll", func(t *testing.T) {
		for _, name := range []string{"normal", "exponential", "discrete", "sorted"} {
			vals := numericStreams(n)[name]
			ours, theirs := newQuantiles(DefaultQuantileK), newDSKLL(t)
			for _, x := range vals {
				ours.add(x)
				theirs.Update(x)
			}
			// Merge: 50 sketches of n/50 values each.
			oursM, theirsM := newQuantiles(DefaultQuantileK), newDSKLL(t)
			for part := range 50 {
				o, d := newQuantiles(DefaultQuantileK), newDSKLL(t)
				for _, x := range vals[part*n/50 : (part+1)*n/50] {
					o.add(x)
					d.Update(x)
				}
				oursM.merge(o)
				theirsM.Merge(d)
			}
			cdf, cdfM := ours.CDF(), oursM.CDF()
			eo, ed := rankErrorOf(vals, cdf.At), rankErrorOf(vals, dsRank(t, theirs))
			eoM, edM := rankErrorOf(vals, cdfM.At), rankErrorOf(vals, dsRank(t, theirsM))
			dsBytes, err := theirs.ToSlice()
			if err != nil {
				t.Fatal(err)
			}
			ourBytes := ours.appendTo(nil)
			t.Logf("kll %-11s n=%d rank error ours %.4f (merged %.4f) datasketches %.4f (merged %.4f); retained ours %d ds %d; bytes ours %d (zstd %d) ds %d (zstd %d)",
				name, n, eo, eoM, ed, edM, ours.Retained(), theirs.GetNumRetained(),
				len(ourBytes), len(zstdx.Encode(nil, ourBytes)), len(dsBytes), len(zstdx.Encode(nil, dsBytes)))
			if bound := 0.01; eo > bound || eoM > bound {
				t.Errorf("ours: rank error %.4f / merged %.4f above %.2f", eo, eoM, bound)
			}
			// DataSketches documents its single-sided normalised rank error at 99% confidence.
			if bound := theirs.GetNormalizedRankError(false); ed > bound || edM > bound {
				t.Errorf("datasketches: rank error %.4f / merged %.4f above its bound %.4f", ed, edM, bound)
			}
		}
	})
	t.Run("hll", func(t *testing.T) {
		for _, card := range []int{1_000, 100_000, 1_000_000} {
			var ours Distinct
			theirs := newDSHLL(t)
			var oursNum Distinct
			theirsNum := newDSHLL(t)
			for i := range card {
				s := "user-" + strconv.Itoa(i)
				ours.insertHash(xxhash.Sum64String(s))
				if err := theirs.UpdateString(s); err != nil {
					t.Fatal(err)
				}
				x := float64(i) * 0.37
				oursNum.insertHash(hashFloat(x))
				if err := theirsNum.UpdateUInt64(math.Float64bits(x)); err != nil {
					t.Fatal(err)
				}
			}
			relErr := func(est float64) float64 { return math.Abs(est-float64(card)) / float64(card) }
			eo, eoNum := relErr(float64(ours.Estimate())), relErr(float64(oursNum.Estimate()))
			est, err := theirs.GetEstimate()
			if err != nil {
				t.Fatal(err)
			}
			estNum, err := theirsNum.GetEstimate()
			if err != nil {
				t.Fatal(err)
			}
			ed, edNum := relErr(est), relErr(estNum)
			dsBytes, err := theirs.ToCompactSlice()
			if err != nil {
				t.Fatal(err)
			}
			hll4, err := theirs.CopyAs(dshll.TgtHllTypeHll4)
			if err != nil {
				t.Fatal(err)
			}
			ds4Bytes, err := hll4.ToCompactSlice()
			if err != nil {
				t.Fatal(err)
			}
			ourBytes := ours.appendTo(nil)
			t.Logf("hll card=%-9d relative error strings ours %.4f ds %.4f, numbers ours %.4f ds %.4f; bytes ours %d (zstd %d) ds HLL_8 %d (zstd %d) HLL_4 %d",
				card, eo, ed, eoNum, edNum, len(ourBytes), len(zstdx.Encode(nil, ourBytes)),
				len(dsBytes), len(zstdx.Encode(nil, dsBytes)), len(ds4Bytes))
			// 1.6% standard error: 5% is more than three standard errors for both.
			for who, e := range map[string]float64{"ours strings": eo, "ours numbers": eoNum, "ds strings": ed, "ds numbers": edNum} {
				if e > 0.05 {
					t.Errorf("%s: relative error %.4f above 0.05 at %d", who, e, card)
				}
			}
		}
	})
	t.Run("frequent", func(t *testing.T) {
		// "mg" is the Misra-Gries summary (k = 128) of EncodingVersion 1; "ds" is Frequent, the
		// DataSketches sketch profiles now use. Both are read through Count, the lower bound
		// shared/drift uses.
		const distinct = 10_000
		stream := zipfStream(200_000, distinct)
		mg, ds := newMG(DefaultFrequentK), newFrequent(FrequentLgMapSize)
		truth := map[string]uint64{}
		for _, s := range stream {
			mg.add(s)
			ds.add(s)
			truth[s]++
		}
		// Merge: 20 sketches of 10,000 values each.
		mgM, dsM := newMG(DefaultFrequentK), newFrequent(FrequentLgMapSize)
		for part := range 20 {
			o, d := newMG(DefaultFrequentK), newFrequent(FrequentLgMapSize)
			for _, s := range stream[part*10_000 : (part+1)*10_000] {
				o.add(s)
				d.add(s)
			}
			mgM.merge(o)
			dsM.merge(d)
		}
		keys := make([]string, 0, len(truth))
		for k := range truth {
			keys = append(keys, k)
		}
		slices.SortFunc(keys, func(a, b string) int { return int(truth[b]) - int(truth[a]) })
		top := keys[:50]
		maxErr := func(count func(string) uint64) float64 {
			worst := 0.0
			for _, k := range top {
				worst = max(worst, math.Abs(float64(count(k))-float64(truth[k])))
			}
			return worst / float64(len(stream))
		}
		em, emM := maxErr(mg.Count), maxErr(mgM.Count)
		ed, edM := maxErr(ds.Count), maxErr(dsM.Count)
		mgBytes, dsBytes := mg.appendTo(nil), ds.appendTo(nil)
		t.Logf("frequent zipf(1.1) n=%d distinct=%d top-50 max error/n mg %.5f (merged %.5f, bound %.5f) ds %.5f (merged %.5f, bound %.5f); counters mg %d ds %d; bytes mg %d (zstd %d) ds %d (zstd %d)",
			len(stream), distinct, em, emM, float64(mg.MaxError())/float64(len(stream)),
			ed, edM, float64(ds.MaxError())/float64(len(stream)),
			len(mg.counts), len(ds.Items()),
			len(mgBytes), len(zstdx.Encode(nil, mgBytes)), len(dsBytes), len(zstdx.Encode(nil, dsBytes)))
		for who, c := range map[string]struct {
			err   float64
			bound uint64
		}{"mg": {em, mg.MaxError()}, "mg merged": {emM, mgM.MaxError()}, "ds": {ed, ds.MaxError()}, "ds merged": {edM, dsM.MaxError()}} {
			if c.err*float64(len(stream)) > float64(c.bound) {
				t.Errorf("%s: error %.5f above its own bound %d", who, c.err, c.bound)
			}
		}
	})
}

// BenchmarkSketchUpdate measures one update of each sketch, ours against DataSketches, on the
// streams of TestDataSketchesComparison.
func BenchmarkSketchUpdate(b *testing.B) {
	vals := numericStreams(1 << 16)["normal"]
	strs := zipfStream(1<<16, 10_000)
	ids := make([]string, 1<<16)
	for i := range ids {
		ids[i] = "user-" + strconv.Itoa(i)
	}
	mask := len(vals) - 1
	b.Run("kll/ours", func(b *testing.B) {
		q := newQuantiles(DefaultQuantileK)
		b.ReportAllocs()
		for i := range b.N {
			q.add(vals[i&mask])
		}
	})
	b.Run("kll/datasketches", func(b *testing.B) {
		s := newDSKLL(b)
		b.ReportAllocs()
		for i := range b.N {
			s.Update(vals[i&mask])
		}
	})
	b.Run("hll-string/ours", func(b *testing.B) {
		var d Distinct
		b.ReportAllocs()
		for i := range b.N {
			d.insertHash(xxhash.Sum64String(ids[i&mask]))
		}
	})
	b.Run("hll-string/datasketches", func(b *testing.B) {
		s := newDSHLL(b)
		b.ReportAllocs()
		for i := range b.N {
			if err := s.UpdateString(ids[i&mask]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("hll-number/ours", func(b *testing.B) {
		var d Distinct
		b.ReportAllocs()
		for i := range b.N {
			d.insertHash(hashFloat(vals[i&mask]))
		}
	})
	b.Run("hll-number/datasketches", func(b *testing.B) {
		s := newDSHLL(b)
		b.ReportAllocs()
		for i := range b.N {
			if err := s.UpdateUInt64(math.Float64bits(vals[i&mask])); err != nil {
				b.Fatal(err)
			}
		}
	})
	few := make([]string, 1<<16) // a typical categorical column: 50 values, all counted exactly
	for i := range few {
		few[i] = "site-" + strconv.Itoa(i*7%50)
	}
	b.Run("frequent-50/ours", func(b *testing.B) {
		f := newMG(DefaultFrequentK)
		b.ReportAllocs()
		for i := range b.N {
			f.add(few[i&mask])
		}
	})
	b.Run("frequent-50/datasketches", func(b *testing.B) {
		f := newFrequent(FrequentLgMapSize)
		b.ReportAllocs()
		for i := range b.N {
			f.add(few[i&mask])
		}
	})
	b.Run("frequent/ours", func(b *testing.B) { // Misra-Gries of EncodingVersion 1
		f := newMG(DefaultFrequentK)
		b.ReportAllocs()
		for i := range b.N {
			f.add(strs[i&mask])
		}
	})
	b.Run("frequent/datasketches", func(b *testing.B) { // Frequent, as profiles use it
		f := newFrequent(FrequentLgMapSize)
		b.ReportAllocs()
		for i := range b.N {
			f.add(strs[i&mask])
		}
	})
}

// BenchmarkSketchMerge measures merging one sketch of a 10,000-value window into an aggregate,
// as the hub does per column of a fleet profile.
func BenchmarkSketchMerge(b *testing.B) {
	vals := numericStreams(10_000)["normal"]
	strs := zipfStream(10_000, 10_000)
	b.Run("kll/ours", func(b *testing.B) {
		w, agg := newQuantiles(DefaultQuantileK), newQuantiles(DefaultQuantileK)
		for _, x := range vals {
			w.add(x)
			agg.add(x)
		}
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			agg.merge(w)
		}
	})
	b.Run("kll/datasketches", func(b *testing.B) {
		w, agg := newDSKLL(b), newDSKLL(b)
		for _, x := range vals {
			w.Update(x)
			agg.Update(x)
		}
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			agg.Merge(w)
		}
	})
	b.Run("hll/ours", func(b *testing.B) {
		var w, agg Distinct
		for i, x := range vals {
			w.insertHash(hashFloat(x))
			agg.insertHash(hashFloat(float64(i)))
		}
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			agg.merge(&w)
		}
	})
	b.Run("hll/datasketches", func(b *testing.B) {
		w := newDSHLL(b)
		u, err := dshll.NewUnion(dsHLLLgK)
		if err != nil {
			b.Fatal(err)
		}
		for i, x := range vals {
			if err := w.UpdateUInt64(math.Float64bits(x)); err != nil {
				b.Fatal(err)
			}
			if err := u.UpdateUInt64(math.Float64bits(float64(i))); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			if err := u.UpdateSketch(w); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("frequent/ours", func(b *testing.B) {
		w, agg := newMG(DefaultFrequentK), newMG(DefaultFrequentK)
		for _, s := range strs {
			w.add(s)
			agg.add(s)
		}
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			agg.merge(w)
		}
	})
	b.Run("frequent/datasketches", func(b *testing.B) {
		w, agg := newFrequent(FrequentLgMapSize), newFrequent(FrequentLgMapSize)
		for _, s := range strs {
			w.add(s)
			agg.add(s)
		}
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			agg.merge(w)
		}
	})
}

// BenchmarkSketchSerialize measures serialising and deserialising the KLL sketch of a
// 10,000-value window (the largest part of a profile), ours plain against DataSketches' format.
func BenchmarkSketchSerialize(b *testing.B) {
	vals := numericStreams(10_000)["normal"]
	ours, theirs := newQuantiles(DefaultQuantileK), newDSKLL(b)
	for _, x := range vals {
		ours.add(x)
		theirs.Update(x)
	}
	b.Run("kll-encode/ours", func(b *testing.B) {
		b.ReportAllocs()
		var n int
		for range b.N {
			n = len(ours.appendTo(nil))
		}
		b.ReportMetric(float64(n), "bytes")
	})
	b.Run("kll-encode/datasketches", func(b *testing.B) {
		b.ReportAllocs()
		var n int
		for range b.N {
			out, err := theirs.ToSlice()
			if err != nil {
				b.Fatal(err)
			}
			n = len(out)
		}
		b.ReportMetric(float64(n), "bytes")
	})
	b.Run("kll-decode/datasketches", func(b *testing.B) {
		enc, err := theirs.ToSlice()
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for range b.N {
			if _, err := dskll.NewKllItemsSketchFromSlice[float64](enc, common.ItemSketchDoubleComparator(false), common.ItemSketchDoubleSerDe{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("kll-decode/ours", func(b *testing.B) {
		enc := ours.appendTo(nil)
		b.ReportAllocs()
		for range b.N {
			r := &reader{b: enc}
			if _, err := r.quantiles(ours.N()); err != nil {
				b.Fatal(err)
			}
		}
	})
}
