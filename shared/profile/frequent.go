package profile

import (
	"cmp"
	"slices"
	"strings"
	"unicode/utf8"
)

// DefaultFrequentK is the number of counters a categorical column keeps: a column with at most
// this many distinct values is counted exactly.
const DefaultFrequentK = 128

// MaxItemBytes is the longest categorical value kept as a frequent item; longer values are cut
// at a UTF-8 boundary at or below it (so two long values with a common prefix count together).
const MaxItemBytes = 128

// Item is one frequent value with its counter. The true count lies in
// [Count, Count+Frequent.MaxError()].
type Item struct {
	// Value is the categorical value (cut to MaxItemBytes).
	Value string
	// Count is its counter, a lower bound of its true count.
	Count uint64
}

// Frequent is a Misra-Gries frequent-items summary (Misra, Gries 1982) with the mergeable
// combine of Agarwal et al. 2012 ("Mergeable Summaries"). It keeps at most k counters; each
// counter underestimates its value's count by at most (Total - sum of counters)/(k+1), and any
// value whose count exceeds that bound is kept. Results do not depend on map iteration order.
//
// A Frequent is not safe for concurrent use.
type Frequent struct {
	k      int
	n      uint64
	counts map[string]uint64
	scr    []uint64 // scratch for merge
}

func newFrequent(k int) *Frequent {
	return &Frequent{k: k, counts: make(map[string]uint64, min(k, 16))}
}

// K returns the number of counters the summary may keep.
func (f *Frequent) K() int { return f.k }

// Total returns the number of values added (tracked or not).
func (f *Frequent) Total() uint64 { return f.n }

// MaxError returns the largest amount by which any counter (or an absent value's zero) may
// undercount the truth.
func (f *Frequent) MaxError() uint64 {
	return (f.n - f.tracked()) / uint64(f.k+1)
}

func (f *Frequent) tracked() uint64 {
	var s uint64
	for _, c := range f.counts {
		s += c
	}
	return s
}

// Items returns the counters, largest count first, ties by value; it allocates.
func (f *Frequent) Items() []Item {
	out := make([]Item, 0, len(f.counts))
	for v, c := range f.counts {
		out = append(out, Item{v, c})
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
func (f *Frequent) Count(v string) uint64 { return f.counts[truncItem(v)] }

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

func (f *Frequent) merge(o *Frequent) {
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

func (f *Frequent) clone() *Frequent {
	c := &Frequent{k: f.k, n: f.n, counts: make(map[string]uint64, len(f.counts))}
	for v, n := range f.counts {
		c.counts[v] = n
	}
	return c
}
