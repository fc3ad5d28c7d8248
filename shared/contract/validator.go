package contract

import (
	"fmt"
	"hash/maphash"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Rules named in violations besides the constraint names ("required", "unique", "minimum",
// "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength", "pattern",
// "enum").
const (
	// RuleType: the cell is not a value of the field's type and format.
	RuleType = "type"
	// RuleParse: the row could not be parsed at all (malformed JSON, broken CSV quoting).
	RuleParse = "parse"
	// RuleMissingColumn: the row has no cell for a field.
	RuleMissingColumn = "missing_column"
	// RuleExtraColumn: the row has a column the schema does not name.
	RuleExtraColumn = "extra_column"
	// RuleEncoding: the cell is not valid UTF-8.
	RuleEncoding = "encoding"
	// RulePrimaryKey: a composite primary key repeats within the window. (A one-field key
	// reports "unique" on that field.)
	RulePrimaryKey = "primaryKey"
)

// MaxViolationValue is the most bytes of a cell or line a Violation quotes.
const MaxViolationValue = 256

// Violation is one broken rule in one row.
type Violation struct {
	// Row is RawRow.Num: the 1-based data row ordinal in its stream.
	Row int64 `json:"row"`
	// Field is the field's name ("" for a parse failure; the key names joined by "," for a
	// composite primary key; the column's name for an extra column).
	Field string `json:"field"`
	// Rule is a constraint name or one of the Rule* constants.
	Rule string `json:"rule"`
	// Value is the offending text, valid UTF-8, at most MaxViolationValue bytes.
	Value string `json:"value"`
	// Message explains a parse failure; empty otherwise.
	Message string `json:"message,omitempty"`
}

// Options tune a Validator.
type Options struct {
	// MaxKeys bounds each uniqueness set (DefaultMaxKeys when 0).
	MaxKeys int
}

// Validator checks rows of one stream against a Schema. It keeps the uniqueness state of the
// current window, so it is not safe for concurrent use: use one per stream, and call Reset when
// a window closes.
type Validator struct {
	s     *Schema
	c     caster
	h     maphash.Hash
	sets  []*keySet // per field; nil where the field is not unique
	pkSet *keySet   // composite primary key; nil unless the key has several fields
}

// NewValidator returns a Validator for s with empty uniqueness state.
func NewValidator(s *Schema, opts Options) *Validator {
	if opts.MaxKeys <= 0 {
		opts.MaxKeys = DefaultMaxKeys
	}
	v := &Validator{s: s, c: caster{intern: map[string]string{}}, sets: make([]*keySet, len(s.Fields))}
	v.h.SetSeed(maphash.MakeSeed())
	for i := range s.Fields {
		if s.Fields[i].c.unique {
			v.sets[i] = &keySet{seen: map[uint64]struct{}{}, max: opts.MaxKeys}
		}
	}
	if len(s.pk) > 1 {
		v.pkSet = &keySet{seen: map[uint64]struct{}{}, max: opts.MaxKeys}
	}
	return v
}

// Reset forgets the keys seen so far: uniqueness holds within a window.
func (v *Validator) Reset() {
	for _, k := range v.sets {
		if k != nil {
			clear(k.seen)
		}
	}
	if v.pkSet != nil {
		clear(v.pkSet.seen)
	}
}

// Validate checks row, writes its typed cells into out (which must have one element per schema
// field; Validate panics otherwise) and appends its violations to dst. ok is true when no
// violation was appended. A cell that breaks its type, or is missing, is written as null.
// Validate does not retain row or out; Values may share memory with nothing but immutable
// strings, so out stays valid after the reader moves on.
func (v *Validator) Validate(row *RawRow, out []Value, dst []Violation) (_ []Violation, ok bool) {
	fields := v.s.Fields
	if len(out) != len(fields) {
		panic(fmt.Sprintf("contract: Validate given %d values for %d fields", len(out), len(fields)))
	}
	n0 := len(dst)
	if row.ParseErr != "" {
		clear(out)
		dst = append(dst, Violation{Row: row.Num, Rule: RuleParse, Value: quote(row.Text), Message: row.ParseErr})
		return dst, false
	}
	for i := range fields {
		f := &fields[i]
		var cell RawCell
		if i < len(row.Cells) {
			cell = row.Cells[i]
		}
		out[i] = Value{}
		null := false
		switch cell.Kind {
		case RawAbsent:
			if f.Role == RoleFeature {
				dst = append(dst, Violation{Row: row.Num, Field: f.Name, Rule: RuleMissingColumn})
				continue
			}
			null = true
		case RawNull:
			null = true
		case RawString:
			if !utf8.Valid(cell.Data) {
				dst = append(dst, Violation{Row: row.Num, Field: f.Name, Rule: RuleEncoding, Value: quote(cell.Data)})
				continue
			}
			null = slices.Contains(f.c.missing, view(cell.Data))
		}
		if null {
			if f.c.required {
				dst = append(dst, Violation{Row: row.Num, Field: f.Name, Rule: "required", Value: quote(cell.Data)})
			}
			continue
		}
		val, ok := v.c.cast(f, cell)
		if !ok {
			dst = append(dst, Violation{Row: row.Num, Field: f.Name, Rule: RuleType, Value: quote(cell.Data)})
			continue
		}
		dst = v.check(row.Num, i, f, val, cell.Data, dst)
		out[i] = val
	}
	for _, x := range row.Extra {
		dst = append(dst, Violation{Row: row.Num, Field: quote(x.Name), Rule: RuleExtraColumn, Value: quote(x.Value)})
	}
	if v.pkSet != nil {
		dst = v.checkPrimaryKey(row.Num, out, dst)
	}
	return dst, len(dst) == n0
}

// check applies the constraints of field f (index i) to its typed value.
func (v *Validator) check(rowNum int64, i int, f *Field, val Value, text []byte, dst []Violation) []Violation {
	bad := func(rule string) {
		dst = append(dst, Violation{Row: rowNum, Field: f.Name, Rule: rule, Value: quote(text)})
	}
	if set := v.sets[i]; set != nil {
		v.h.Reset()
		hashValue(&v.h, val)
		if !set.add(v.h.Sum64()) {
			bad("unique")
		}
	}
	c := &f.c
	if b := c.bounds[0]; b != nil && !(val.Num >= b.Num) {
		bad("minimum")
	}
	if b := c.bounds[1]; b != nil && !(val.Num <= b.Num) {
		bad("maximum")
	}
	if b := c.bounds[2]; b != nil && !(val.Num > b.Num) {
		bad("exclusiveMinimum")
	}
	if b := c.bounds[3]; b != nil && !(val.Num < b.Num) {
		bad("exclusiveMaximum")
	}
	if val.Kind == KindString {
		cons := &f.Constraints
		if cons.MinLength >= 0 || cons.MaxLength >= 0 {
			n := utf8.RuneCountInString(val.Str)
			if cons.MinLength >= 0 && n < cons.MinLength {
				bad("minLength")
			}
			if cons.MaxLength >= 0 && n > cons.MaxLength {
				bad("maxLength")
			}
		}
		if c.pattern != nil && !c.pattern.MatchString(val.Str) {
			bad("pattern")
		}
	}
	if c.enum != nil && !slices.ContainsFunc(c.enum, func(e Value) bool { return equal(e, val) }) {
		bad("enum")
	}
	return dst
}

// checkPrimaryKey reports a repeated composite key. Keys with a null part are not checked
// (the null already broke "required").
func (v *Validator) checkPrimaryKey(rowNum int64, out []Value, dst []Violation) []Violation {
	v.h.Reset()
	for _, i := range v.s.pk {
		if out[i].IsNull() {
			return dst
		}
		hashValue(&v.h, out[i])
	}
	if v.pkSet.add(v.h.Sum64()) {
		return dst
	}
	parts := make([]string, len(v.s.pk))
	for k, i := range v.s.pk {
		parts[k] = formatValue(out[i])
	}
	return append(dst, Violation{
		Row: rowNum, Field: strings.Join(v.s.PrimaryKey, ","), Rule: RulePrimaryKey,
		Value: quote([]byte(strings.Join(parts, ","))),
	})
}

// equal compares typed values.
func equal(a, b Value) bool {
	if a.Kind != b.Kind {
		return false
	}
	switch a.Kind {
	case KindNumber, KindTime:
		return a.Num == b.Num
	case KindString:
		return a.Str == b.Str
	case KindBool:
		return a.Bool == b.Bool
	}
	return true
}

// quote makes reported text safe: valid UTF-8, at most MaxViolationValue bytes.
func quote(b []byte) string {
	s := string(b)
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	if n := MaxViolationValue; len(s) > n {
		for n > 0 && !utf8.RuneStart(s[n]) {
			n--
		}
		s = s[:n]
	}
	return s
}

// formatValue renders a typed key part for a violation report.
func formatValue(v Value) string {
	switch v.Kind {
	case KindNumber:
		return strconv.FormatFloat(v.Num, 'g', -1, 64)
	case KindTime:
		return time.UnixMilli(int64(v.Num)).UTC().Format(time.RFC3339Nano)
	case KindString:
		return v.Str
	case KindBool:
		return strconv.FormatBool(v.Bool)
	}
	return ""
}
