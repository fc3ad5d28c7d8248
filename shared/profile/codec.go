package profile

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
	"slices"
	"strings"

	"github.com/driftline/driftline/shared/zstdx"
)

// EncodingVersion is the first byte of an encoded profile. The rest is one zstd frame holding
// the plain encoding described in DESIGN.md. Version 2 carries a categorical column's frequent
// items as a DataSketches frequent-items sketch; Decode still reads version 1 (Misra-Gries
// counters), which profiles stored by the hub and sent by older agents use.
const EncodingVersion = 2

// encodingV1 is the version whose categorical columns hold Misra-Gries counters.
const encodingV1 = 1

// MaxPlainBytes bounds the decompressed size Decode accepts.
const MaxPlainBytes = zstdx.MaxDecoded

const (
	maxLevels  = 64
	maxSketchK = 1 << 12
	minSketchK = 8
	hllEmpty   = 0
	hllSparse  = 1
	hllDense   = 2
	thrAbsent  = 0
	thrPresent = 1
)

// Encode returns the compact binary form of p: the version byte, then zstd of the plain
// encoding. Equal profiles built by the same operations encode to the same bytes.
func (p *Profile) Encode() []byte {
	plain := p.appendPlain(make([]byte, 0, 256))
	return zstdx.Encode([]byte{EncodingVersion}, plain)
}

// MarshalBinary implements encoding.BinaryMarshaler with Encode.
func (p *Profile) MarshalBinary() ([]byte, error) { return p.Encode(), nil }

// UnmarshalBinary implements encoding.BinaryUnmarshaler with Decode, replacing p's contents.
func (p *Profile) UnmarshalBinary(b []byte) error {
	q, err := Decode(b)
	if err != nil {
		return err
	}
	*p = *q
	return nil
}

func (p *Profile) appendPlain(b []byte) []byte {
	b = binary.AppendUvarint(b, p.rows)
	b = binary.AppendUvarint(b, uint64(len(p.cols)))
	for i := range p.cols {
		c := &p.cols[i]
		b = appendString(b, c.col.Name)
		b = append(b, byte(c.col.Kind))
		b = binary.AppendUvarint(b, c.count)
		b = binary.AppendUvarint(b, c.nulls)
		if c.thr == nil {
			b = append(b, thrAbsent)
		} else {
			b = append(b, thrPresent)
			m := c.thr.Method
			if c.thr.OnStatistic {
				m += statisticSuffix
			}
			b = appendString(b, m)
			b = appendFloat(b, c.thr.Value)
		}
		if c.col.Kind == Numeric {
			m := &c.mom
			for _, f := range [...]float64{m.min, m.max, m.sum, m.comp, m.wmean, m.m2} {
				b = appendFloat(b, f)
			}
			b = c.quant.appendTo(b)
		} else {
			b = c.freq.appendTo(b)
		}
		b = c.distinct.appendTo(b)
	}
	return b
}

// appendTo appends the KLL sketch's plain encoding: k, coin state, levels.
func (q *Quantiles) appendTo(b []byte) []byte {
	b = binary.AppendUvarint(b, uint64(q.k))
	b = binary.LittleEndian.AppendUint64(b, q.rng)
	b = binary.AppendUvarint(b, uint64(len(q.levels)))
	for _, lv := range q.levels {
		b = binary.AppendUvarint(b, uint64(len(lv)))
		for _, f := range lv {
			b = appendFloat(b, f)
		}
	}
	return b
}

// appendTo appends the frequent-items sketch's plain encoding: its length, then its
// DataSketches serialization (appendDSFrequent).
func (f *Frequent) appendTo(b []byte) []byte {
	ds := appendDSFrequent(nil, f.lgMapSize(), f.byValue(), f.Total(), f.MaxError())
	b = binary.AppendUvarint(b, uint64(len(ds)))
	return append(b, ds...)
}

func (d *Distinct) appendTo(b []byte) []byte {
	if d.empty() {
		return append(b, hllEmpty)
	}
	nz := 0
	d.each(func(int, uint8) { nz++ })
	if nz*4 >= hllM { // dense is smaller from a quarter of the registers on
		b = append(b, hllDense)
		if d.regs != nil {
			return append(b, d.regs...)
		}
		n := len(b)
		b = append(b, make([]byte, hllM)...)
		d.each(func(i int, r uint8) { b[n+i] = r })
		return b
	}
	b = append(b, hllSparse)
	b = binary.AppendUvarint(b, uint64(nz))
	last := 0
	d.each(func(i int, r uint8) {
		b = binary.AppendUvarint(b, uint64(i-last))
		b = append(b, r)
		last = i
	})
	return b
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendFloat(b []byte, f float64) []byte {
	return binary.LittleEndian.AppendUint64(b, math.Float64bits(f))
}

// Decode parses an encoded profile. Bytes that are not a well-formed profile give an error
// wrapping ErrCorrupt (or ErrVersion, or zstdx.ErrTooLarge beyond MaxPlainBytes), never a
// panic; no allocation exceeds what the input's size can justify.
func Decode(b []byte) (*Profile, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: empty input", ErrCorrupt)
	}
	if b[0] != EncodingVersion && b[0] != encodingV1 {
		return nil, fmt.Errorf("%w: %d", ErrVersion, b[0])
	}
	plain, err := zstdx.Decode(nil, b[1:], MaxPlainBytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	r := &reader{b: plain, version: b[0]}
	p, err := r.profile()
	if err != nil {
		return nil, fmt.Errorf("%w: at byte %d: %w", ErrCorrupt, r.off, err)
	}
	if r.off != len(plain) {
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrCorrupt, len(plain)-r.off)
	}
	return p, nil
}

type reader struct {
	b       []byte
	off     int
	version byte
}

func (r *reader) left() int { return len(r.b) - r.off }

func (r *reader) uvarint(what string) (uint64, error) {
	v, n := binary.Uvarint(r.b[r.off:])
	if n <= 0 {
		return 0, fmt.Errorf("bad varint for %s", what)
	}
	r.off += n
	return v, nil
}

// count reads a length that must be at most max and leave at least unit bytes per element.
func (r *reader) count(what string, max, unit int) (int, error) {
	v, err := r.uvarint(what)
	if err != nil {
		return 0, err
	}
	if v > uint64(max) || v*uint64(unit) > uint64(r.left()) {
		return 0, fmt.Errorf("%s %d out of range", what, v)
	}
	return int(v), nil
}

func (r *reader) byte(what string) (byte, error) {
	if r.left() < 1 {
		return 0, fmt.Errorf("truncated at %s", what)
	}
	c := r.b[r.off]
	r.off++
	return c, nil
}

func (r *reader) u64(what string) (uint64, error) {
	if r.left() < 8 {
		return 0, fmt.Errorf("truncated at %s", what)
	}
	v := binary.LittleEndian.Uint64(r.b[r.off:])
	r.off += 8
	return v, nil
}

func (r *reader) float(what string) (float64, error) {
	v, err := r.u64(what)
	f := math.Float64frombits(v)
	if err == nil && (math.IsNaN(f) || math.IsInf(f, 0)) {
		return 0, fmt.Errorf("non-finite %s", what)
	}
	return f, err
}

func (r *reader) str(what string, max int) (string, error) {
	n, err := r.count(what+" length", max, 1)
	if err != nil {
		return "", err
	}
	s := string(r.b[r.off : r.off+n])
	r.off += n
	return s, nil
}

func (r *reader) profile() (*Profile, error) {
	rows, err := r.uvarint("rows")
	if err != nil {
		return nil, err
	}
	ncols, err := r.count("column count", MaxColumns, 4)
	if err != nil {
		return nil, err
	}
	p := &Profile{rows: rows, cols: make([]ColumnProfile, ncols), index: make(map[string]int, ncols)}
	for i := range p.cols {
		if err := r.column(&p.cols[i]); err != nil {
			return nil, fmt.Errorf("column %d: %w", i, err)
		}
		c := &p.cols[i]
		if _, dup := p.index[c.col.Name]; dup {
			return nil, fmt.Errorf("duplicate column %q", c.col.Name)
		}
		p.index[c.col.Name] = i
		if sum, carry := bits.Add64(c.count, c.nulls, 0); carry != 0 || sum != rows {
			return nil, fmt.Errorf("column %q: count %d + nulls %d != rows %d", c.col.Name, c.count, c.nulls, rows)
		}
	}
	return p, nil
}

func (r *reader) column(c *ColumnProfile) error {
	var err error
	if c.col.Name, err = r.str("name", MaxNameBytes); err != nil {
		return err
	}
	if c.col.Name == "" {
		return fmt.Errorf("empty column name")
	}
	kind, err := r.byte("kind")
	if err != nil {
		return err
	}
	c.col.Kind = Kind(kind)
	if c.count, err = r.uvarint("count"); err != nil {
		return err
	}
	if c.nulls, err = r.uvarint("nulls"); err != nil {
		return err
	}
	if err := r.threshold(c); err != nil {
		return err
	}
	switch c.col.Kind {
	case Numeric:
		if err := r.moments(&c.mom, c.count); err != nil {
			return err
		}
		if c.quant, err = r.quantiles(c.count); err != nil {
			return err
		}
	case Categorical:
		if r.version == encodingV1 {
			c.freq, err = r.frequentV1(c.count)
		} else {
			c.freq, err = r.frequent(c.count)
		}
		if err != nil {
			return err
		}
	default:
		return fmt.Errorf("unknown kind %d", kind)
	}
	return r.distinct(&c.distinct, c.count)
}

func (r *reader) threshold(c *ColumnProfile) error {
	has, err := r.byte("threshold flag")
	if err != nil {
		return err
	}
	switch has {
	case thrAbsent:
		return nil
	case thrPresent:
	default:
		return fmt.Errorf("bad threshold flag %d", has)
	}
	var t Threshold
	if t.Method, err = r.str("threshold method", maxMethodBytes); err != nil {
		return err
	}
	t.Method, t.OnStatistic = strings.CutSuffix(t.Method, statisticSuffix)
	if t.Method == "" {
		return fmt.Errorf("empty threshold method")
	}
	if t.Value, err = r.float("threshold"); err != nil {
		return err
	}
	c.thr = &t
	return nil
}

func (r *reader) moments(m *moments, n uint64) error {
	// min and max are values seen, so finite; the sums and M2 may overflow to ±Inf (or NaN)
	// on values near the float64 limits, and must still round-trip.
	var fs [6]float64
	for i := range fs {
		var err error
		if i < 2 {
			fs[i], err = r.float("moments")
		} else {
			var u uint64
			u, err = r.u64("moments")
			fs[i] = math.Float64frombits(u)
		}
		if err != nil {
			return err
		}
	}
	m.n = n
	m.min, m.max, m.sum, m.comp, m.wmean, m.m2 = fs[0], fs[1], fs[2], fs[3], fs[4], fs[5]
	if n > 0 && (m.min > m.max || m.m2 < 0) {
		return fmt.Errorf("inconsistent moments")
	}
	return nil
}

func (r *reader) quantiles(n uint64) (*Quantiles, error) {
	k, err := r.uvarint("quantile k")
	if err != nil {
		return nil, err
	}
	if k < minSketchK || k > maxSketchK {
		return nil, fmt.Errorf("quantile k %d out of range", k)
	}
	q := &Quantiles{k: int(k)}
	if q.rng, err = r.u64("quantile state"); err != nil {
		return nil, err
	}
	nl, err := r.count("level count", maxLevels, 1)
	if err != nil {
		return nil, err
	}
	if nl == 0 {
		return nil, fmt.Errorf("no levels")
	}
	q.levels = make([][]float64, nl)
	q.setCaps()
	var weight uint64
	for h := range q.levels {
		cnt, err := r.count("level length", 1<<20, 8)
		if err != nil {
			return nil, err
		}
		if cnt == 0 {
			continue
		}
		lv := make([]float64, cnt)
		for i := range lv {
			if lv[i], err = r.float("quantile value"); err != nil {
				return nil, err
			}
		}
		q.levels[h] = lv
		q.size += cnt
		hi, lo := bits.Mul64(uint64(cnt), 1<<h)
		var carry uint64
		weight, carry = bits.Add64(weight, lo, 0)
		if hi != 0 || carry != 0 {
			return nil, fmt.Errorf("quantile weight overflows")
		}
	}
	if q.size >= q.maxSize {
		return nil, fmt.Errorf("quantile sketch over capacity")
	}
	if weight != n {
		return nil, fmt.Errorf("quantile weight %d != count %d", weight, n)
	}
	q.n = n
	return q, nil
}

// frequentV1 reads version 1's Misra-Gries counters (k, items ascending with their counts) into
// a frequent-items sketch with the same counters, total and error bound, (n - tracked)/(k+1).
func (r *reader) frequentV1(n uint64) (*Frequent, error) {
	k, err := r.uvarint("frequent k")
	if err != nil {
		return nil, err
	}
	if k < 1 || k > maxSketchK {
		return nil, fmt.Errorf("frequent k %d out of range", k)
	}
	cnt, err := r.count("item count", int(k), 2)
	if err != nil {
		return nil, err
	}
	items := make([]Item, 0, cnt)
	var sum uint64
	for i := range cnt {
		v, err := r.str("item", MaxItemBytes)
		if err != nil {
			return nil, err
		}
		if i > 0 && strings.Compare(items[i-1].Value, v) >= 0 {
			return nil, fmt.Errorf("items not in ascending order")
		}
		c, err := r.uvarint("item count")
		if err != nil {
			return nil, err
		}
		if c == 0 {
			return nil, fmt.Errorf("zero item count")
		}
		var carry uint64
		if sum, carry = bits.Add64(sum, c, 0); carry != 0 || sum > n {
			return nil, fmt.Errorf("item counts exceed total %d", n)
		}
		items = append(items, Item{v, c})
	}
	lg := FrequentLgMapSize
	for 3<<(lg-2) < cnt {
		lg++
	}
	return fromParts(lg, items, n, (n-sum)/(k+1)), nil
}

// frequent reads a length-prefixed DataSketches frequent-items sketch of strings, checking
// every field before the library sees it: its own decoder trusts its input (a map size byte
// sizes an allocation; short input is indexed past its end). The stream length must be the
// column's count n; items must be distinct.
func (r *reader) frequent(n uint64) (*Frequent, error) {
	size, err := r.count("frequent sketch length", MaxPlainBytes, 1)
	if err != nil {
		return nil, err
	}
	d := &reader{b: r.b[r.off : r.off+size]}
	r.off += size
	f, err := d.dsFrequent(n)
	if err != nil {
		return nil, fmt.Errorf("frequent sketch: at byte %d: %w", d.off, err)
	}
	if d.left() != 0 {
		return nil, fmt.Errorf("frequent sketch: %d trailing bytes", d.left())
	}
	return f, nil
}

func (r *reader) dsFrequent(n uint64) (*Frequent, error) {
	pre0, err := r.u64("preamble")
	if err != nil {
		return nil, err
	}
	preLongs, serVer, family := pre0&0x3F, pre0>>8&0xFF, pre0>>16&0xFF
	lgMax, lgCur, flags := int(pre0>>24&0xFF), int(pre0>>32&0xFF), pre0>>40&0xFF
	if pre0&0xC0 != 0 || pre0>>48 != 0 || serVer != dsSerVer || family != dsFamilyFrequency {
		return nil, fmt.Errorf("not a frequent-items sketch of serial version %d", dsSerVer)
	}
	if lgMax < dsLgMinMapSize || lgMax > dsLgMaxMapSize || lgCur < dsLgMinMapSize || lgCur > lgMax {
		return nil, fmt.Errorf("map sizes 2^%d, 2^%d out of range", lgCur, lgMax)
	}
	switch {
	case preLongs == 1 && flags == dsEmptyFlags:
		if n != 0 {
			return nil, fmt.Errorf("empty sketch for %d values", n)
		}
		return newFrequent(lgMax), nil
	case preLongs != 4 || flags != 0:
		return nil, fmt.Errorf("bad preamble length %d or flags %#x", preLongs, flags)
	}
	var pre [3]uint64
	for i := range pre {
		if pre[i], err = r.u64("preamble"); err != nil {
			return nil, err
		}
	}
	active, weight, offset := pre[0], pre[1], pre[2]
	if active > uint64(3<<(lgMax-2)) || active*12 > uint64(r.left()) {
		return nil, fmt.Errorf("%d items out of range", active)
	}
	if weight != n || weight > math.MaxInt64 || offset > weight {
		return nil, fmt.Errorf("stream length %d, offset %d for %d values", weight, offset, n)
	}
	items := make([]Item, active)
	var sum uint64
	for i := range items {
		c, _ := r.u64("item count") // length checked above
		if c == 0 || c > weight {
			return nil, fmt.Errorf("item count %d out of range", c)
		}
		var carry uint64
		if sum, carry = bits.Add64(sum, c, 0); carry != 0 || sum > weight {
			return nil, fmt.Errorf("item counts exceed total %d", weight)
		}
		items[i].Count = c
	}
	for i := range items {
		if r.left() < 4 {
			return nil, fmt.Errorf("truncated at item length")
		}
		l := int(binary.LittleEndian.Uint32(r.b[r.off:]))
		r.off += 4
		if l > MaxItemBytes || l > r.left() {
			return nil, fmt.Errorf("item length %d out of range", l)
		}
		items[i].Value = string(r.b[r.off : r.off+l])
		r.off += l
	}
	// Encode writes items in ascending order; other DataSketches libraries write them in their
	// hash-table order. Either is accepted, duplicates are not.
	slices.SortFunc(items, func(a, b Item) int { return strings.Compare(a.Value, b.Value) })
	for i := 1; i < len(items); i++ {
		if items[i].Value == items[i-1].Value {
			return nil, fmt.Errorf("duplicate item %q", items[i].Value)
		}
	}
	return fromParts(lgMax, items, weight, offset), nil
}

func (r *reader) distinct(d *Distinct, n uint64) error {
	mode, err := r.byte("distinct mode")
	if err != nil {
		return err
	}
	switch mode {
	case hllEmpty:
		if n != 0 {
			return fmt.Errorf("empty distinct sketch for %d values", n)
		}
		return nil
	case hllDense:
		if r.left() < hllM {
			return fmt.Errorf("truncated distinct registers")
		}
		d.regs = make([]uint8, hllM)
		copy(d.regs, r.b[r.off:r.off+hllM])
		r.off += hllM
	case hllSparse:
		nz, err := r.count("register count", hllM, 2)
		if err != nil {
			return err
		}
		if nz > sparseMax {
			d.regs = make([]uint8, hllM)
		} else {
			d.sparse = make([]uint32, 0, nz)
		}
		idx := 0
		for i := range nz {
			delta, err := r.uvarint("register index")
			if err != nil {
				return err
			}
			if (i > 0 && delta == 0) || delta >= uint64(hllM-idx) {
				return fmt.Errorf("register index out of range")
			}
			idx += int(delta)
			v, err := r.byte("register")
			if err != nil {
				return err
			}
			if v == 0 {
				return fmt.Errorf("zero register in sparse form")
			}
			if v > hllQ+1 {
				return fmt.Errorf("register value %d out of range", v)
			}
			d.set(idx, v)
		}
	default:
		return fmt.Errorf("bad distinct mode %d", mode)
	}
	for _, v := range d.regs {
		if v > hllQ+1 {
			return fmt.Errorf("register value %d out of range", v)
		}
	}
	return nil
}
