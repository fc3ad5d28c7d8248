// Package profile builds mergeable statistical profiles of typed rows: per column count, nulls,
// min, max, mean, variance, a KLL quantile sketch, a HyperLogLog distinct count and, for
// categorical columns, Apache DataSketches' frequent-items sketch. Profiles of disjoint row sets
// merge into the profile of their union (exactly for counts and extremes, within sketch error
// otherwise), so a hub can add up a fleet's windows. See DESIGN.md for the invariants and error
// bounds.
package profile

import (
	"fmt"
	"math"
	"strings"

	"github.com/cespare/xxhash/v2"

	"github.com/driftline/driftline/shared/contract"
)

// Kind says how a column is summarised.
type Kind uint8

// Column kinds. Numbers and datetimes are Numeric; strings and booleans are Categorical.
const (
	// KindInvalid is the zero Kind; New refuses it.
	KindInvalid Kind = iota
	// Numeric columns take contract.KindNumber and contract.KindTime values.
	Numeric
	// Categorical columns take contract.KindString and contract.KindBool values.
	Categorical
)

// String returns "numeric" or "categorical".
func (k Kind) String() string {
	switch k {
	case Numeric:
		return "numeric"
	case Categorical:
		return "categorical"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Column names one profiled column and its kind.
type Column struct {
	// Name is the column's name, unique within a profile.
	Name string
	// Kind says how the column is summarised.
	Kind Kind
}

// Threshold is a drift threshold calibrated for one column: it applies when the column is
// compared with Method (a drift method name such as "wasserstein").
type Threshold struct {
	// Method is the drift method the threshold was calibrated for.
	Method string
	// Value is the threshold: a distance for the distance methods; for the p-value methods
	// (ks, chisquare) a bound on the test statistic (KS D, chi-square statistic) when
	// OnStatistic is set, else on the p-value (what profiles encoded before statistic
	// calibration; shared/drift ignores those).
	Value float64
	// OnStatistic says Value bounds the test statistic of a p-value method, not its p-value.
	// It travels in the encoding as the method name with statisticSuffix, so that a decoder
	// that predates it sees an unknown method and keeps its default threshold.
	OnStatistic bool
}

// statisticSuffix marks, in the encoded method name, a threshold with OnStatistic set.
const statisticSuffix = ":statistic"

// Limits on what a profile may describe; Decode enforces the same.
const (
	// MaxColumns is the largest number of columns of a profile.
	MaxColumns = 1024
	// MaxNameBytes is the longest column name.
	MaxNameBytes = 256
)

// ColumnProfile is the summary of one column. Its accessors are read-only views; the sketches
// they return must not be modified.
type ColumnProfile struct {
	col      Column
	count    uint64 // non-null values
	nulls    uint64
	mom      moments    // Numeric only
	quant    *Quantiles // Numeric only
	freq     *Frequent  // Categorical only
	distinct Distinct
	thr      *Threshold
}

// Profile summarises rows whose values are indexed like its columns. It is not safe for
// concurrent use: the agent owns one per window, and the hub merges copies.
type Profile struct {
	cols  []ColumnProfile
	index map[string]int
	rows  uint64
}

// New returns an empty profile of cols. Names must be non-empty, unique and at most
// MaxNameBytes long; kinds must be Numeric or Categorical.
func New(cols []Column) (*Profile, error) {
	if len(cols) > MaxColumns {
		return nil, fmt.Errorf("%w: %d columns, at most %d", ErrIncompatible, len(cols), MaxColumns)
	}
	p := &Profile{cols: make([]ColumnProfile, len(cols)), index: make(map[string]int, len(cols))}
	for i, c := range cols {
		if c.Name == "" || len(c.Name) > MaxNameBytes {
			return nil, fmt.Errorf("%w: column %d: name must have 1 to %d bytes", ErrIncompatible, i, MaxNameBytes)
		}
		if _, dup := p.index[c.Name]; dup {
			return nil, fmt.Errorf("%w: duplicate column %q", ErrIncompatible, c.Name)
		}
		p.index[c.Name] = i
		cp := &p.cols[i]
		cp.col = c
		switch c.Kind {
		case Numeric:
			cp.quant = newQuantiles(DefaultQuantileK)
		case Categorical:
			cp.freq = newFrequent(FrequentLgMapSize)
		default:
			return nil, fmt.Errorf("%w: column %q has %v", ErrIncompatible, c.Name, c.Kind)
		}
	}
	return p, nil
}

// Add profiles one row: row[i] is the value of column i. A null counts as a null; so does a
// non-finite number (NaN, ±Inf), which no statistic here can absorb. A row of the wrong length
// or with a value that does not fit its column's kind is refused whole (ErrRowShape,
// ErrValueKind) and leaves the profile unchanged. Add allocates nothing per value once the
// sketches have reached their steady size.
func (p *Profile) Add(row []contract.Value) error {
	if len(row) != len(p.cols) {
		return fmt.Errorf("%w: %d values, %d columns", ErrRowShape, len(row), len(p.cols))
	}
	for i := range row {
		if !fits(p.cols[i].col.Kind, row[i].Kind) {
			return fmt.Errorf("%w: column %q (%v) got value kind %d", ErrValueKind, p.cols[i].col.Name, p.cols[i].col.Kind, row[i].Kind)
		}
	}
	for i := range row {
		v := &row[i]
		c := &p.cols[i]
		switch v.Kind {
		case contract.KindNumber, contract.KindTime:
			x := v.Num
			if math.IsNaN(x) || math.IsInf(x, 0) {
				c.nulls++
				continue
			}
			c.count++
			c.mom.add(x)
			c.quant.add(x)
			c.distinct.insertHash(hashFloat(x))
		case contract.KindString:
			c.count++
			c.freq.add(v.Str)
			c.distinct.insertHash(xxhash.Sum64String(v.Str))
		case contract.KindBool:
			s := "false"
			if v.Bool {
				s = "true"
			}
			c.count++
			c.freq.add(s)
			c.distinct.insertHash(xxhash.Sum64String(s))
		default:
			c.nulls++
		}
	}
	p.rows++
	return nil
}

func fits(k Kind, vk contract.Kind) bool {
	switch vk {
	case contract.KindNull:
		return true
	case contract.KindNumber, contract.KindTime:
		return k == Numeric
	case contract.KindString, contract.KindBool:
		return k == Categorical
	}
	return false
}

// Merge adds o into p, so p describes the union of both row sets. The columns must match in
// name, kind and order, and the sketches in their parameters (ErrIncompatible). Counts, nulls,
// min and max merge exactly; the mean exactly when the sums are exactly representable; the
// sketches within their bounds. The same inputs merged in the same order give the same bytes.
// A calibrated threshold in p is kept; one only in o is copied. o is not modified.
func (p *Profile) Merge(o *Profile) error {
	if err := p.compatible(o); err != nil {
		return err
	}
	for i := range p.cols {
		c, oc := &p.cols[i], &o.cols[i]
		c.count += oc.count
		c.nulls += oc.nulls
		if c.col.Kind == Numeric {
			c.mom.merge(&oc.mom)
			c.quant.merge(oc.quant)
		} else {
			c.freq.merge(oc.freq)
		}
		c.distinct.merge(&oc.distinct)
		if c.thr == nil && oc.thr != nil {
			t := *oc.thr
			c.thr = &t
		}
	}
	p.rows += o.rows
	return nil
}

func (p *Profile) compatible(o *Profile) error {
	if len(p.cols) != len(o.cols) {
		return fmt.Errorf("%w: %d columns against %d", ErrIncompatible, len(p.cols), len(o.cols))
	}
	for i := range p.cols {
		a, b := &p.cols[i], &o.cols[i]
		if a.col != b.col {
			return fmt.Errorf("%w: column %d is %q (%v) against %q (%v)", ErrIncompatible, i, a.col.Name, a.col.Kind, b.col.Name, b.col.Kind)
		}
		if a.quant != nil && a.quant.k != b.quant.k {
			return fmt.Errorf("%w: column %q quantile k %d against %d", ErrIncompatible, a.col.Name, a.quant.k, b.quant.k)
		}
		if a.freq != nil && a.freq.K() != b.freq.K() {
			return fmt.Errorf("%w: column %q frequent capacity %d against %d", ErrIncompatible, a.col.Name, a.freq.K(), b.freq.K())
		}
	}
	return nil
}

// Clone returns a deep copy of p.
func (p *Profile) Clone() *Profile {
	c := &Profile{cols: make([]ColumnProfile, len(p.cols)), index: p.index, rows: p.rows}
	for i := range p.cols {
		src, dst := &p.cols[i], &c.cols[i]
		*dst = *src
		if src.quant != nil {
			dst.quant = src.quant.clone()
		}
		if src.freq != nil {
			dst.freq = src.freq.clone()
		}
		dst.distinct = src.distinct.clone()
		if src.thr != nil {
			t := *src.thr
			dst.thr = &t
		}
	}
	return c
}

// Rows returns the number of rows added (over all merged profiles).
func (p *Profile) Rows() uint64 { return p.rows }

// Columns returns the profile's columns in order (a fresh slice).
func (p *Profile) Columns() []Column {
	out := make([]Column, len(p.cols))
	for i := range p.cols {
		out[i] = p.cols[i].col
	}
	return out
}

// Len returns the number of columns.
func (p *Profile) Len() int { return len(p.cols) }

// At returns column i's summary (0 <= i < Len()).
func (p *Profile) At(i int) *ColumnProfile { return &p.cols[i] }

// Column returns the summary of the named column.
func (p *Profile) Column(name string) (*ColumnProfile, bool) {
	i, ok := p.index[name]
	if !ok {
		return nil, false
	}
	return &p.cols[i], true
}

// SetThreshold stores a calibrated drift threshold for the named column; it travels with the
// profile's encoding. A non-finite value or empty method is refused.
func (p *Profile) SetThreshold(column string, t Threshold) error {
	c, ok := p.Column(column)
	if !ok {
		return fmt.Errorf("%w: %q", ErrUnknownColumn, column)
	}
	if t.Method == "" || len(t.Method)+len(statisticSuffix) > maxMethodBytes || strings.HasSuffix(t.Method, statisticSuffix) || math.IsNaN(t.Value) || math.IsInf(t.Value, 0) {
		return fmt.Errorf("%w: threshold %q=%v for column %q", ErrIncompatible, t.Method, t.Value, column)
	}
	c.thr = &t
	return nil
}

const maxMethodBytes = 32

// Name returns the column's name.
func (c *ColumnProfile) Name() string { return c.col.Name }

// Kind returns the column's kind.
func (c *ColumnProfile) Kind() Kind { return c.col.Kind }

// Count returns the number of non-null values.
func (c *ColumnProfile) Count() uint64 { return c.count }

// Nulls returns the number of null (or non-finite) values.
func (c *ColumnProfile) Nulls() uint64 { return c.nulls }

// Min returns the smallest value of a numeric column (NaN when none).
func (c *ColumnProfile) Min() float64 {
	if c.mom.n == 0 {
		return math.NaN()
	}
	return c.mom.min
}

// Max returns the largest value of a numeric column (NaN when none).
func (c *ColumnProfile) Max() float64 {
	if c.mom.n == 0 {
		return math.NaN()
	}
	return c.mom.max
}

// Mean returns the mean of a numeric column (NaN when none).
func (c *ColumnProfile) Mean() float64 { return c.mom.mean() }

// StdDev returns the population standard deviation of a numeric column.
func (c *ColumnProfile) StdDev() float64 { return math.Sqrt(c.mom.variance()) }

// Quantiles returns the quantile sketch of a numeric column (nil for a categorical one).
func (c *ColumnProfile) Quantiles() *Quantiles { return c.quant }

// Frequent returns the frequent-items summary of a categorical column (nil for a numeric one).
func (c *ColumnProfile) Frequent() *Frequent { return c.freq }

// Distinct returns the estimated number of distinct non-null values.
func (c *ColumnProfile) Distinct() uint64 { return c.distinct.Estimate() }

// Threshold returns the calibrated drift threshold stored for the column, if any.
func (c *ColumnProfile) Threshold() (Threshold, bool) {
	if c.thr == nil {
		return Threshold{}, false
	}
	return *c.thr, true
}
