package contract

import (
	"hash/maphash"
	"math"
)

// DefaultMaxKeys bounds each uniqueness set of a Validator (see Options.MaxKeys).
const DefaultMaxKeys = 1 << 20

// keySet remembers 64-bit hashes of the keys seen in the current window. Memory is bounded by
// the window (Reset) and by max: when the set is full it starts afresh, so uniqueness is then
// checked within runs of max distinct keys. A false duplicate needs a 64-bit hash collision
// (about n²/2⁶⁵ for n keys: one in 10⁷ for a million keys).
type keySet struct {
	seen map[uint64]struct{}
	max  int
}

// add reports whether h is new, and remembers it.
func (k *keySet) add(h uint64) bool {
	if _, dup := k.seen[h]; dup {
		return false
	}
	if len(k.seen) >= k.max {
		clear(k.seen)
	}
	k.seen[h] = struct{}{}
	return true
}

// hashValue mixes a typed value into h. Equal typed values hash equally whatever their text
// ("3", "3.0" and 3 for a number field).
func hashValue(h *maphash.Hash, v Value) {
	h.WriteByte(byte(v.Kind))
	switch v.Kind {
	case KindNumber, KindTime:
		x := v.Num
		if x == 0 {
			x = 0 // -0 and +0 are the same value
		}
		var b [8]byte
		u := math.Float64bits(x)
		for i := range b {
			b[i] = byte(u >> (8 * i))
		}
		h.Write(b[:])
	case KindString:
		h.WriteString(v.Str)
		h.WriteByte(0xff) // separates composite keys: ("a","bc") != ("ab","c")
	case KindBool:
		if v.Bool {
			h.WriteByte(1)
		} else {
			h.WriteByte(0)
		}
	}
}
