package pipeline

import (
	"strings"
	"unicode"

	"github.com/driftline/driftline/shared/contract"
	"github.com/driftline/driftline/shared/wire"
)

// MaxListedViolations is how many violations a Summary lists; the counts cover all of them.
const MaxListedViolations = 100

// Summary is the validation outcome of some rows: one POST /ingest request, one file, or the
// data of `driftline-agent check`. The JSON names are the public report's.
type Summary struct {
	// Rows is the number of rows checked: ValidRows + InvalidRows.
	Rows int64 `json:"rows"`
	// ValidRows passed every rule; InvalidRows broke at least one (all quarantined by the agent).
	ValidRows   int64 `json:"valid_rows"`
	InvalidRows int64 `json:"invalid_rows"`
	// Violations lists the first MaxListedViolations violations (row, field, rule, value).
	Violations []contract.Violation `json:"violations"`
	// ViolationCounts counts every violation by field, then rule. A row that could not be
	// parsed counts under the field "" .
	ViolationCounts map[string]map[string]int64 `json:"violation_counts"`
}

func newSummary() Summary {
	return Summary{Violations: []contract.Violation{}, ViolationCounts: map[string]map[string]int64{}}
}

// add counts one row with its violations (none for a valid row).
func (s *Summary) add(vs []contract.Violation) {
	s.Rows++
	if len(vs) == 0 {
		s.ValidRows++
		return
	}
	s.InvalidRows++
	for _, v := range vs {
		if len(s.Violations) < MaxListedViolations {
			s.Violations = append(s.Violations, v)
		}
		countViolation(s.ViolationCounts, v.Field, v.Rule)
	}
}

// maxCountedFields bounds the distinct field keys counted (extra columns can name anything).
const maxCountedFields = 256

func countViolation(m map[string]map[string]int64, field, rule string) {
	rules, ok := m[field]
	if !ok {
		if len(m) >= maxCountedFields {
			field = otherField
			rules = m[field]
		}
		if rules == nil {
			rules = map[string]int64{}
			m[field] = rules
		}
	}
	rules[rule]++
}

// Field keys of the validation report that are not field names.
const (
	// rowField counts violations of a whole row (a row that could not be parsed).
	rowField = "_row"
	// otherField gathers fields past maxCountedFields distinct names.
	otherField = "_other"
)

// wireViolations turns counts into the validation report's table: rule names in snake_case
// (the wire protocol allows lowercase letters, digits and '_': "exclusiveMinimum" becomes
// "exclusive_minimum"), field names cut to wire.MaxNameLen, the unparsable row under "_row".
func wireViolations(m map[string]map[string]int64) map[string]map[string]int64 {
	out := make(map[string]map[string]int64, len(m))
	for field, rules := range m {
		switch {
		case field == "":
			field = rowField
		case len(field) > wire.MaxNameLen:
			field = clip(field, wire.MaxNameLen)
		}
		dst := out[field]
		if dst == nil {
			dst = map[string]int64{}
			out[field] = dst
		}
		for rule, n := range rules {
			dst[snake(rule)] += n
		}
	}
	return out
}

// snake converts a rule name to the wire protocol's token form.
func snake(rule string) string {
	var b strings.Builder
	for i, r := range rule {
		switch {
		case unicode.IsUpper(r):
			if i > 0 {
				b.WriteByte('_')
			}
			b.WriteRune(unicode.ToLower(r))
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '_':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
		if b.Len() >= 32 {
			break
		}
	}
	s := b.String()
	if len(s) > 32 {
		s = s[:32]
	}
	if s == "" {
		s = "unknown"
	}
	return s
}

// clip cuts s to at most n bytes at a UTF-8 boundary.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}

// NewSummary returns an empty Summary, for the other row kinds' ingesters (agent/outputs).
func NewSummary() Summary { return newSummary() }

// Add counts one row with its violations (none for a valid row).
func (s *Summary) Add(vs []contract.Violation) { s.add(vs) }
