package profile

import (
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
)

// checkBound verifies every counter is within [true-MaxError, true] and every value whose true
// count exceeds MaxError is tracked.
func checkBound(t *testing.T, f *Frequent, truth map[string]uint64) {
	t.Helper()
	bound := f.MaxError()
	for v, c := range truth {
		got := f.Count(v)
		if got > c || got+bound < c {
			t.Fatalf("%q: counter %d, true %d, bound %d", v, got, c, bound)
		}
	}
	if f.Total() == 0 {
		return
	}
	var sum uint64
	for _, it := range f.Items() {
		sum += it.Count
	}
	if sum > f.Total() {
		t.Fatalf("counters sum %d over total %d", sum, f.Total())
	}
}

func TestFrequentExactUnderK(t *testing.T) {
	f := newFrequent(FrequentLgMapSize)
	truth := map[string]uint64{}
	r := rand.New(rand.NewPCG(5, 6))
	for range 20000 {
		v := "cat" + strconv.Itoa(r.IntN(DefaultFrequentK))
		f.add(v)
		truth[v]++
	}
	if f.MaxError() != 0 {
		t.Fatalf("max error %d with at most k values", f.MaxError())
	}
	for v, c := range truth {
		if f.Count(v) != c {
			t.Fatalf("%q: %d, want %d", v, f.Count(v), c)
		}
	}
	items := f.Items()
	for i := 1; i < len(items); i++ {
		if items[i].Count > items[i-1].Count {
			t.Fatal("items not ordered by count")
		}
	}
}

func TestFrequentBoundZipf(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	z := rand.NewZipf(r, 1.2, 1, 5000)
	parts := make([]*Frequent, 4)
	truth := map[string]uint64{}
	for i := range parts {
		parts[i] = newFrequent(5) // 24 counters
		for range 20000 {
			v := strconv.FormatUint(z.Uint64(), 10)
			parts[i].add(v)
			truth[v]++
		}
	}
	merged := parts[0].clone()
	for _, p := range parts[1:] {
		merged.merge(p)
	}
	checkBound(t, merged, truth)
	if merged.Total() != 80000 || len(merged.Items()) > merged.K() {
		t.Fatalf("total %d, %d items", merged.Total(), len(merged.Items()))
	}
	if top := merged.Items()[0]; top.Value != "0" {
		t.Fatalf("most frequent %q, want \"0\"", top.Value)
	}
	t.Logf("merged: %d items, max error %d", len(merged.Items()), merged.MaxError())
}

func TestFrequentTruncatesLongValues(t *testing.T) {
	f := newFrequent(3)
	long := strings.Repeat("é", MaxItemBytes) // 2 bytes a rune: cut must land on a boundary
	f.add(long)
	f.add(long + "x")
	items := f.Items()
	if len(items) != 1 || items[0].Count != 2 || len(items[0].Value) > MaxItemBytes {
		t.Fatalf("items %+v", items)
	}
	if !strings.HasPrefix(long, items[0].Value) || len(items[0].Value)%2 != 0 {
		t.Fatalf("cut mid-rune: %d bytes", len(items[0].Value))
	}
}

// Merging a summary into itself (Profile.Merge(p) with p itself) doubles it: the library's
// merge reads the other sketch's table while it writes its own.
func TestFrequentMergeWithItself(t *testing.T) {
	f := newFrequent(FrequentLgMapSize)
	truth := map[string]uint64{}
	for _, v := range zipfStream(20_000, 1_000) {
		f.add(v)
		truth[v] += 2
	}
	f.merge(f)
	if f.Total() != 40_000 {
		t.Fatalf("total %d", f.Total())
	}
	checkBound(t, f, truth)
}
