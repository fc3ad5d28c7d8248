package profile

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/apache/datasketches-go/common"
	dsfreq "github.com/apache/datasketches-go/frequencies"
)

// DefaultFrequentK is the number of distinct values up to which a categorical column is counted
// exactly. The summary holds up to FrequentCapacity counters, so a few more are exact too.
const DefaultFrequentK = 128

// FrequentLgMapSize is log2 of the hash map of a categorical column's frequent-items sketch:
// 2^8 slots, FrequentCapacity (192) counters before a purge.
const FrequentLgMapSize = 8

// FrequentCapacity is the number of counters a frequent-items sketch of FrequentLgMapSize
// keeps before it purges (DataSketches' load factor 0.75).
const FrequentCapacity = 3 << (FrequentLgMapSize - 2)

// MaxItemBytes is the longest categorical value kept as a frequent item; longer values are cut
// at a UTF-8 boundary at or below it (so two long values with a common prefix count together).
const MaxItemBytes = 128

const (
	dsLgMinMapSize = 3  // DataSketches' smallest frequent-items map
	dsLgMaxMapSize = 12 // the largest map Decode accepts (3,072 counters)
)

// Item is one frequent value with its counter. The true count lies in
// [Count, Count+Frequent.MaxError()].
type Item struct {
	// Value is the categorical value (cut to MaxItemBytes).
	Value string
	// Count is its counter, a lower bound of its true count.
	Count uint64
}

// Frequent is a frequent-items summary: Apache DataSketches' frequent-items sketch (Misra-Gries
// with reverse purging; Anderson et al. 2017, "A High-Performance Algorithm for Identifying
// Frequent Items in Data Streams"), whose encoding the Java, C++ and Python DataSketches
// libraries read. Each counter underestimates its value's count by at most MaxError, and any
// value whose count exceeds MaxError is kept. Results do not depend on map iteration order.
//
// A Frequent is not safe for concurrent use.
type Frequent struct {
	s *dsfreq.ItemsSketch[string]
}

func newFrequent(lgMapSize int) *Frequent {
	s, err := dsfreq.NewFrequencyItemsSketch[string](lgMapSize, dsLgMinMapSize, common.ItemSketchStringHasher{}, common.ItemSketchStringSerDe{})
	if err != nil { // only for sizes this package never asks for
		panic(fmt.Sprintf("profile: frequent-items sketch of 2^%d: %v", lgMapSize, err))
	}
	return &Frequent{s: s}
}

// K returns the number of counters the summary keeps before it purges.
func (f *Frequent) K() int { return f.s.GetMaximumMapCapacity() }

// lgMapSize returns log2 of the sketch's largest map.
func (f *Frequent) lgMapSize() int {
	lg := dsLgMinMapSize
	for 3<<(lg-2) < f.K() {
		lg++
	}
	return lg
}

// Total returns the number of values added (tracked or not).
func (f *Frequent) Total() uint64 { return uint64(f.s.GetStreamLength()) }

// MaxError returns the largest amount by which any counter (or an absent value's zero) may
// undercount the truth.
func (f *Frequent) MaxError() uint64 { return uint64(f.s.GetMaximumError()) }

// Items returns the counters, largest count first, ties by value; it allocates.
func (f *Frequent) Items() []Item {
	rows, err := f.s.GetFrequentItemsWithThreshold(0, dsfreq.ErrorTypeEnum.NoFalseNegatives)
	if err != nil {
		panic(fmt.Sprintf("profile: frequent items: %v", err)) // the sketch is inconsistent: a bug
	}
	out := make([]Item, len(rows))
	for i, r := range rows {
		out[i] = Item{r.GetItem(), uint64(r.GetLowerBound())}
	}
	slices.SortFunc(out, func(a, b Item) int {
		if c := cmp.Compare(b.Count, a.Count); c != 0 {
			return c
		}
		return strings.Compare(a.Value, b.Value)
	})
	return out
}

// Count returns the counter of v (0 when not tracked) after the same cut Add applies.
func (f *Frequent) Count(v string) uint64 {
	c, err := f.s.GetLowerBound(truncItem(v))
	if err != nil || c < 0 {
		return 0
	}
	return uint64(c)
}

func truncItem(s string) string {
	if len(s) <= MaxItemBytes {
		return s
	}
	i := MaxItemBytes
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i]
}

func (f *Frequent) add(s string) {
	if len(s) > MaxItemBytes {
		s = strings.Clone(truncItem(s)) // do not pin the caller's long string
	}
	if err := f.s.Update(s); err != nil {
		panic(fmt.Sprintf("profile: frequent-items update: %v", err)) // only on a broken sketch
	}
}

func (f *Frequent) merge(o *Frequent) {
	if o.s.IsEmpty() {
		// No counters (none yet, or a purge removed them all) but maybe a stream length and an
		// error offset, which DataSketches' Merge would drop.
		if o.Total() > 0 {
			*f = *fromParts(f.lgMapSize(), f.byValue(), f.Total()+o.Total(), f.MaxError()+o.MaxError())
		}
		return
	}
	if _, err := f.s.Merge(o.s); err != nil {
		panic(fmt.Sprintf("profile: frequent-items merge: %v", err)) // only on a broken sketch
	}
}

func (f *Frequent) clone() *Frequent {
	return fromParts(f.lgMapSize(), f.byValue(), f.Total(), f.MaxError())
}

// byValue returns the counters in ascending value order, the order the encoding uses.
func (f *Frequent) byValue() []Item {
	items := f.Items()
	slices.SortFunc(items, func(a, b Item) int { return strings.Compare(a.Value, b.Value) })
	return items
}

// DataSketches frequent-items serialization (serial version 1), as its Java, C++, Python and
// Go libraries write it: preamble longs 1 (empty) or 4, serial version, family, log2 of the
// largest and the current map size, flags; then active items, stream length, offset (int64s);
// the counts (int64s); the items (uint32 length and UTF-8 bytes each). All little-endian.
const (
	dsSerVer          = 1
	dsFamilyFrequency = 10
	dsEmptyFlags      = 5 // DataSketches' EMPTY_FLAG_MASK
)

// dsLgCur returns the smallest map a sketch of n counters starts with, so that decoding it
// holds them without growing.
func dsLgCur(n, lgMax int) int {
	lg := dsLgMinMapSize
	for lg < lgMax && 3<<(lg-2) < n {
		lg++
	}
	return lg
}

// appendDSFrequent appends the DataSketches serialization of a frequent-items sketch with
// lgMax, counters items (in the order given), stream length weight and error offset. With a
// zero weight it is the 8-byte empty form.
func appendDSFrequent(b []byte, lgMax int, items []Item, weight, offset uint64) []byte {
	pre0 := uint64(dsSerVer)<<8 | dsFamilyFrequency<<16 | uint64(lgMax)<<24 | uint64(dsLgCur(len(items), lgMax))<<32
	if weight == 0 {
		return binary.LittleEndian.AppendUint64(b, pre0|1|dsEmptyFlags<<40)
	}
	b = binary.LittleEndian.AppendUint64(b, pre0|4)
	b = binary.LittleEndian.AppendUint64(b, uint64(len(items)))
	b = binary.LittleEndian.AppendUint64(b, weight)
	b = binary.LittleEndian.AppendUint64(b, offset)
	for _, it := range items {
		b = binary.LittleEndian.AppendUint64(b, it.Count)
	}
	for _, it := range items {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(it.Value)))
		b = append(b, it.Value...)
	}
	return b
}

// fromParts returns the sketch with these counters, stream length and error offset. The
// caller has checked them (at most 0.75 * 2^lgMax distinct items, counts positive and summing
// to at most weight, lgMax within range), so the library's decoder sees only bytes it handles.
func fromParts(lgMax int, items []Item, weight, offset uint64) *Frequent {
	b := appendDSFrequent(nil, lgMax, items, weight, offset)
	s, err := dsfreq.NewFrequencyItemsSketchFromSlice[string](b, common.ItemSketchStringHasher{}, common.ItemSketchStringSerDe{})
	if err != nil {
		panic(fmt.Sprintf("profile: frequent-items sketch from checked parts: %v", err)) // a bug here
	}
	return &Frequent{s: s}
}
