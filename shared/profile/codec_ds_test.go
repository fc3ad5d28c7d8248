package profile

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/apache/datasketches-go/common"
	dsfreq "github.com/apache/datasketches-go/frequencies"

	"github.com/driftline/driftline/shared/contract"
)

// v1Rows are the rows of testdata/profile-v1.bin (temp, site, ok), encoded with
// EncodingVersion 1 before frequent items moved to DataSketches.
func v1Rows() [][]contract.Value {
	r := rand.New(rand.NewPCG(21, 21))
	z := rand.NewZipf(r, 1.3, 1, 999)
	rows := make([][]contract.Value, 5000)
	for i := range rows {
		rows[i] = []contract.Value{
			{Kind: contract.KindNumber, Num: r.NormFloat64()},
			{Kind: contract.KindString, Str: "site-" + strconv.FormatUint(z.Uint64(), 10)},
			{Kind: contract.KindBool, Bool: r.IntN(3) == 0},
		}
	}
	return rows
}

func v1Cols() []Column {
	return []Column{{"temp", Numeric}, {"site", Categorical}, {"ok", Categorical}}
}

func readV1(t *testing.T) *Profile {
	t.Helper()
	b, err := os.ReadFile("testdata/profile-v1.bin")
	if err != nil {
		t.Fatal(err)
	}
	if b[0] != 1 {
		t.Fatalf("test data has version %d", b[0])
	}
	p, err := Decode(b)
	if err != nil {
		t.Fatalf("decode version 1: %v", err)
	}
	return p
}

func column(t *testing.T, p *Profile, name string) *ColumnProfile {
	t.Helper()
	c, ok := p.Column(name)
	if !ok {
		t.Fatalf("no column %q", name)
	}
	return c
}

// A profile stored by the hub or sent by an older agent (version 1, Misra-Gries counters)
// decodes into the same counters, total and error bound, and re-encodes as version 2.
func TestDecodeVersion1(t *testing.T) {
	p := readV1(t)
	raw, err := os.ReadFile("testdata/profile-v1.site-items.json")
	if err != nil {
		t.Fatal(err)
	}
	var want []Item
	if err := json.Unmarshal(raw, &want); err != nil {
		t.Fatal(err)
	}
	site := column(t, p, "site")
	f := site.Frequent()
	if f.Total() != 5000 || f.MaxError() != 10 || !slices.Equal(f.Items(), want) {
		t.Fatalf("site: total %d, max error %d, %d items (want 5000, 10, %d)", f.Total(), f.MaxError(), len(f.Items()), len(want))
	}
	if thr, ok := site.Threshold(); !ok || thr.Method != "chisquare" || !thr.OnStatistic || thr.Value != 12.5 {
		t.Fatalf("threshold %+v %v", thr, ok)
	}
	if ok := column(t, p, "ok").Frequent(); ok.Count("false") != 3383 || ok.Count("true") != 1617 || ok.MaxError() != 0 {
		t.Fatalf("ok: %+v", ok.Items())
	}
	if temp := column(t, p, "temp"); temp.Count() != 5000 || temp.Quantiles().N() != 5000 {
		t.Fatalf("temp: count %d", temp.Count())
	}
	enc := p.Encode()
	if enc[0] != EncodingVersion {
		t.Fatalf("re-encoded as version %d", enc[0])
	}
	q, err := Decode(enc)
	if err != nil {
		t.Fatal(err)
	}
	if g := column(t, q, "site").Frequent(); !slices.Equal(g.Items(), want) || g.MaxError() != 10 || g.Total() != 5000 {
		t.Fatalf("after version 2 round trip: %d items, max error %d", len(g.Items()), g.MaxError())
	}
}

// Profiles of both encodings merge, either way round, and the merged counters keep the
// guarantee: every true count within [Count, Count+MaxError].
func TestMergeAcrossEncodings(t *testing.T) {
	truth := map[string]uint64{}
	fresh, err := New(v1Cols())
	if err != nil {
		t.Fatal(err)
	}
	for _, row := range v1Rows() {
		if err := fresh.Add(row); err != nil {
			t.Fatal(err)
		}
		truth[row[1].Str] += 2 // the version 1 profile holds the same rows
	}
	for name, pair := range map[string][2]*Profile{
		"new into old": {readV1(t), fresh.Clone()},
		"old into new": {fresh.Clone(), readV1(t)},
	} {
		into, from := pair[0], pair[1]
		if err := into.Merge(from); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		f := column(t, into, "site").Frequent()
		if f.Total() != 10000 {
			t.Fatalf("%s: total %d", name, f.Total())
		}
		for v, c := range truth {
			if got := f.Count(v); got > c || got+f.MaxError() < c {
				t.Fatalf("%s: %q counter %d, true %d, max error %d", name, v, got, c, f.MaxError())
			}
		}
		if _, err := Decode(into.Encode()); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
}

// The sketch inside a version 2 profile is DataSketches' own serialization: the library reads
// ours, and ours reads what its C++ implementation wrote.
func TestFrequentEncodingIsDataSketches(t *testing.T) {
	f := newFrequent(FrequentLgMapSize)
	for _, s := range zipfStream(50_000, 2_000) {
		f.add(s)
	}
	blob := f.appendTo(nil)
	n, k := binary.Uvarint(blob)
	if k <= 0 || int(n) != len(blob)-k {
		t.Fatalf("length prefix %d of %d bytes", n, len(blob))
	}
	ds, err := dsfreq.NewFrequencyItemsSketchFromSlice[string](blob[k:], common.ItemSketchStringHasher{}, common.ItemSketchStringSerDe{})
	if err != nil {
		t.Fatal(err)
	}
	if uint64(ds.GetStreamLength()) != f.Total() || uint64(ds.GetMaximumError()) != f.MaxError() || ds.GetNumActiveItems() != len(f.Items()) {
		t.Fatalf("library reads length %d, error %d, %d items; want %d, %d, %d",
			ds.GetStreamLength(), ds.GetMaximumError(), ds.GetNumActiveItems(), f.Total(), f.MaxError(), len(f.Items()))
	}
	for _, it := range f.Items() {
		if lb, err := ds.GetLowerBound(it.Value); err != nil || uint64(lb) != it.Count {
			t.Fatalf("%q: library %d, ours %d", it.Value, lb, it.Count)
		}
	}

	for _, tc := range []struct {
		file   string
		n      uint64
		check  string
		count  uint64
		errMax bool
	}{
		{"frequent_string_n0_cpp.sk", 0, "", 0, false},
		{"frequent_string_n10_cpp.sk", 10, "7", 1, false},
		{"frequent_string_n1000_cpp.sk", 1000, "", 0, true},
		{"frequent_string_n100000_cpp.sk", 100000, "", 0, true},
		{"frequent_string_utf8_cpp.sk", 28, "эюя", 7, false},
	} {
		b, err := os.ReadFile("testdata/datasketches/" + tc.file)
		if err != nil {
			t.Fatal(err)
		}
		r := &reader{b: b}
		got, err := r.dsFrequent(tc.n)
		if err != nil || r.left() != 0 {
			t.Fatalf("%s: %v (%d bytes left)", tc.file, err, r.left())
		}
		if got.Total() != tc.n || (got.MaxError() > 0) != tc.errMax || (tc.check != "" && got.Count(tc.check) != tc.count) {
			t.Fatalf("%s: total %d, max error %d, items %+v", tc.file, got.Total(), got.MaxError(), got.Items())
		}
	}
}

// A purge can remove every counter (all equal): the stream length and error offset remain, and
// merging, cloning and encoding keep them (DataSketches' own Merge skips a sketch without
// counters, and its encoder writes one as empty).
func TestFrequentWithoutCountersKeepsItsWeight(t *testing.T) {
	f := newFrequent(FrequentLgMapSize)
	for i := range FrequentCapacity + 1 {
		f.add("v" + strconv.Itoa(i))
	}
	if len(f.Items()) != 0 || f.Total() != FrequentCapacity+1 || f.MaxError() != 1 {
		t.Fatalf("after the purge: %d items, total %d, max error %d", len(f.Items()), f.Total(), f.MaxError())
	}
	g := newFrequent(FrequentLgMapSize)
	g.add("a")
	g.merge(f)
	if g.Total() != FrequentCapacity+2 || g.MaxError() != 1 || g.Count("a") != 1 {
		t.Fatalf("merged: total %d, max error %d, a %d", g.Total(), g.MaxError(), g.Count("a"))
	}
	if c := f.clone(); c.Total() != f.Total() || c.MaxError() != f.MaxError() {
		t.Fatalf("clone: total %d, max error %d", c.Total(), c.MaxError())
	}
	blob := f.appendTo(nil)
	r := &reader{b: blob}
	size, _ := r.uvarint("length")
	d := &reader{b: r.b[r.off : r.off+int(size)]}
	back, err := d.dsFrequent(f.Total())
	if err != nil || back.Total() != f.Total() || back.MaxError() != f.MaxError() {
		t.Fatalf("round trip: %v, total %d, max error %d", err, back.Total(), back.MaxError())
	}
}

// dsBlob returns the serialization of a small sketch: 3 items, stream length 10.
func dsBlob() []byte {
	return appendDSFrequent(nil, FrequentLgMapSize, []Item{{"a", 5}, {"b", 3}, {"c", 1}}, 10, 1)
}

// The DataSketches bytes are checked before the library sees them: its own decoder sizes a map
// from a header byte (a panic for 2^60) and indexes short input past its end.
func TestDecodeRefusesBadFrequentSketch(t *testing.T) {
	if _, err := (&reader{b: dsBlob()}).dsFrequent(10); err != nil {
		t.Fatalf("the valid blob: %v", err)
	}
	set := func(off int, v uint64, width int) func([]byte) []byte {
		return func(b []byte) []byte {
			if width == 1 {
				b[off] = byte(v)
			} else {
				binary.LittleEndian.PutUint64(b[off:], v)
			}
			return b
		}
	}
	cases := map[string]struct {
		edit func([]byte) []byte
		n    uint64
	}{
		"huge current map":          {set(4, 60, 1), 10},
		"huge largest map":          {set(3, 60, 1), 10},
		"current above largest":     {set(4, FrequentLgMapSize+1, 1), 10},
		"other family":              {set(2, 7, 1), 10},
		"other serial version":      {set(1, 2, 1), 10},
		"preamble of 2 longs":       {set(0, 2, 1), 10},
		"empty flag with items":     {set(5, dsEmptyFlags, 1), 10},
		"more items than the map":   {set(8, 1000, 8), 10},
		"more items than bytes":     {set(8, 4, 8), 10},
		"length not the count":      {func(b []byte) []byte { return b }, 11},
		"offset above length":       {set(24, 11, 8), 10},
		"zero count":                {set(32, 0, 8), 10},
		"counts above length":       {set(32, 9, 8), 10},
		"truncated":                 {func(b []byte) []byte { return b[:len(b)-1] }, 10},
		"truncated preamble":        {func(b []byte) []byte { return b[:20] }, 10},
		"item length past the end":  {set(56, 200, 1), 10},
		"duplicate item":            {func(b []byte) []byte { b[len(b)-1] = 'a'; return b }, 10},
		"trailing bytes":            {func(b []byte) []byte { return append(b, 0) }, 10},
		"negative length as uint64": {set(16, 1<<63, 8), 1 << 63},
	}
	for name, tc := range cases {
		b := tc.edit(dsBlob())
		r := &reader{b: b}
		f, err := r.dsFrequent(tc.n)
		if err == nil && r.left() == 0 {
			t.Errorf("%s: accepted (%d items)", name, len(f.Items()))
		}
	}
	// Through Decode: the same refusal is ErrCorrupt.
	p, err := New([]Column{{"c", Categorical}})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"a", "a", "b"} {
		if err := p.Add([]contract.Value{{Kind: contract.KindString, Str: v}}); err != nil {
			t.Fatal(err)
		}
	}
	plain := plainOf(p)
	i := bytes.Index(plain, []byte{4, dsSerVer, dsFamilyFrequency})
	if i < 0 {
		t.Fatal("no sketch in the plain encoding")
	}
	plain[i+4] = 60
	if _, err := Decode(frame(plain)); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "map sizes") {
		t.Fatalf("Decode: %v", err)
	}
}

// FuzzDSFrequent feeds the frequent-items reader directly: no panic, and what it accepts
// re-encodes to bytes it reads back to the same counters.
func FuzzDSFrequent(f *testing.F) {
	f.Add(dsBlob(), uint64(10))
	for _, tc := range []struct {
		file string
		n    uint64
	}{{"frequent_string_n10_cpp.sk", 10}, {"frequent_string_n1000_cpp.sk", 1000}, {"frequent_string_utf8_cpp.sk", 28}} {
		if b, err := os.ReadFile("testdata/datasketches/" + tc.file); err == nil {
			f.Add(b, tc.n)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte, n uint64) {
		r := &reader{b: b}
		got, err := r.dsFrequent(n)
		if err != nil {
			return
		}
		enc := got.appendTo(nil)
		size, k := binary.Uvarint(enc)
		back, err := (&reader{b: enc[k : k+int(size)]}).dsFrequent(n)
		if err != nil {
			t.Fatalf("re-read: %v", err)
		}
		if !slices.Equal(back.Items(), got.Items()) || back.Total() != got.Total() || back.MaxError() != got.MaxError() {
			t.Fatal("re-read differs")
		}
	})
}
