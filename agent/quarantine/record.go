package quarantine

import (
	"encoding/json"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/driftline/driftline/shared/contract"
)

// MaxEntryBytes bounds one stored entry. A row with more violations than fit keeps the first
// ones and says how many were cut (Entry.Truncated).
const MaxEntryBytes = 16 << 10

// Violation is one broken rule of a quarantined row.
type Violation struct {
	// Field is the field's name ("" for a row that could not be parsed).
	Field string `json:"field"`
	// Rule is the constraint or rule name ("required", "maximum", "type", "parse", ...).
	Rule string `json:"rule"`
	// Value is the offending text, at most contract.MaxViolationValue bytes.
	Value string `json:"value"`
	// Message explains a parse failure; empty otherwise.
	Message string `json:"message,omitempty"`
}

// Entry is one invalid row held in quarantine.
type Entry struct {
	// Seq is the entry's position in the store, increasing; set by Add.
	Seq uint64 `json:"seq"`
	// Time is when the row was quarantined (UTC).
	Time time.Time `json:"time"`
	// Source names where the row came from ("mqtt", "http", "file:NAME", ...).
	Source string `json:"source"`
	// Row is the row's 1-based ordinal in its source stream.
	Row int64 `json:"row"`
	// Violations are the rules the row broke, in field order.
	Violations []Violation `json:"violations"`
	// Truncated counts violations left out to keep the entry under MaxEntryBytes.
	Truncated int `json:"truncated,omitempty"`
}

// FromViolations returns the quarantine entry of one row, given the violations the validator
// reported for it (all of the same row).
func FromViolations(at time.Time, source string, row int64, vs []contract.Violation) Entry {
	e := Entry{Time: at.UTC(), Source: source, Row: row, Violations: make([]Violation, 0, len(vs))}
	for _, v := range vs {
		e.Violations = append(e.Violations, Violation{Field: v.Field, Rule: v.Rule, Value: v.Value, Message: v.Message})
	}
	return e
}

// encode returns the stored form of e: JSON, cut to MaxEntryBytes by dropping trailing
// violations (each one is at most a few hundred bytes, so the cut stays close to the bound).
func encode(e Entry) ([]byte, error) {
	e.Source = clip(e.Source, 256)
	for {
		b, err := json.Marshal(e)
		if err != nil {
			return nil, fmt.Errorf("encode quarantine entry: %w", err)
		}
		if len(b) <= MaxEntryBytes || len(e.Violations) <= 1 {
			return b, nil
		}
		drop := max(1, len(e.Violations)/4)
		e.Violations = e.Violations[:len(e.Violations)-drop]
		e.Truncated += drop
	}
}

// decode parses a stored entry. Stored bytes can be damaged (a disk, a downgrade): the error
// says so and the caller skips the entry.
func decode(seq uint64, b []byte) (Entry, error) {
	var e Entry
	if err := json.Unmarshal(b, &e); err != nil {
		return Entry{}, fmt.Errorf("%w: entry %d: %v", ErrCorrupt, seq, err)
	}
	if e.Seq != seq {
		return Entry{}, fmt.Errorf("%w: entry %d says seq %d", ErrCorrupt, seq, e.Seq)
	}
	return e, nil
}

// clip cuts s to at most n bytes at a UTF-8 boundary.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
