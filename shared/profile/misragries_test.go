package profile

import (
	"cmp"
	"encoding/binary"
	"slices"
	"strings"
)

// mgFrequent is the Misra-Gries frequent-items summary (Misra, Gries 1982) with the mergeable
// combine of Agarwal et al. 2012 ("Mergeable Summaries"). It keeps at most k counters; each
// counter underestimates its value's count by at most (Total - sum of counters)/(k+1), and any
// value whose count exceeds that bound is kept. Results do not depend on map iteration order.
//
// It is what EncodingVersion 1 encoded, kept here as the yardstick of datasketches_test.go.
type mgFrequent struct {
	k      int
	n      uint64
	counts map[string]uint64
	scr    []uint64 // scratch for merge
}

func newMG(k int) *mgFrequent {
	return &mgFrequent{k: k, counts: make(map[string]uint64, min(k, 16))}
}

// Total returns the number of values added (tracked or not).
func (f *mgFrequent) Total() uint64 { return f.n }

// MaxError returns the largest amount by which any counter (or an absent value's zero) may
// undercount the truth.
func (f *mgFrequent) MaxError() uint64 {
	return (f.n - f.tracked()) / uint64(f.k+1)
}

func (f *mgFrequent) tracked() uint64 {
	var s uint64
	for _, c := range f.counts {
		s += c
	}
	return s
}

// Count returns the counter of v (0 when not tracked) after the same cut Add applies.
func (f *mgFrequent) Count(v string) uint64 { return f.counts[truncItem(v)] }

func (f *mgFrequent) add(s string) {
	f.n++
	long := len(s) > MaxItemBytes
	if long {
		s = truncItem(s)
	}
	if c, ok := f.counts[s]; ok {
		f.counts[s] = c + 1
		return
	}
	if len(f.counts) < f.k {
		if long {
			s = strings.Clone(s) // do not pin the caller's long string
		}
		f.counts[s] = 1
		return
	}
	// Full and s untracked: decrement every counter (s's own unit is dropped with them).
	for v, c := range f.counts {
		if c == 1 {
			delete(f.counts, v)
		} else {
			f.counts[v] = c - 1
		}
	}
}

func (f *mgFrequent) merge(o *mgFrequent) {
	for v, c := range o.counts {
		f.counts[v] += c
	}
	f.n += o.n
	if len(f.counts) <= f.k {
		return
	}
	f.scr = f.scr[:0]
	for _, c := range f.counts {
		f.scr = append(f.scr, c)
	}
	slices.SortFunc(f.scr, func(a, b uint64) int { return cmp.Compare(b, a) })
	cut := f.scr[f.k] // the (k+1)-th largest counter
	for v, c := range f.counts {
		if c <= cut {
			delete(f.counts, v)
		} else {
			f.counts[v] = c - cut
		}
	}
}

// appendTo appends version 1's plain encoding: k, then items in ascending key order with
// their counts.
func (f *mgFrequent) appendTo(b []byte) []byte {
	b = binary.AppendUvarint(b, uint64(f.k))
	keys := make([]string, 0, len(f.counts))
	for k := range f.counts {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b = binary.AppendUvarint(b, uint64(len(keys)))
	for _, k := range keys {
		b = appendString(b, k)
		b = binary.AppendUvarint(b, f.counts[k])
	}
	return b
}
