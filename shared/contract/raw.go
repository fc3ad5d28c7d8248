package contract

// RawKind is what a reader found in a cell before validation.
type RawKind uint8

// Kinds of RawCell. The zero RawCell is an absent column.
const (
	// RawAbsent: the row has no such column (a missing CSV cell or JSON key).
	RawAbsent RawKind = iota
	// RawNull: JSON null.
	RawNull
	// RawString: a CSV cell or a JSON string (unescaped), in the Table Schema lexical form.
	RawString
	// RawNumber: a JSON number literal, grammar already checked by the reader.
	RawNumber
	// RawBool: JSON true or false; Data is "true" or "false".
	RawBool
	// RawComplex: a JSON object or array; Data is its JSON text.
	RawComplex
)

// RawCell is one cell as read. Data is only valid until the reader's next call and must not be
// modified: it may alias the reader's buffers (or, for CSV, an immutable string).
type RawCell struct {
	Kind RawKind
	Data []byte
}

// RawExtra is a column that the schema does not name.
type RawExtra struct {
	Name  []byte
	Value []byte
}

// RawRow is one row as read from a source, its cells indexed like Schema.Fields. Readers fill
// it in place, reusing its slices, so reading allocates nothing per row in the steady state.
type RawRow struct {
	// Num is the 1-based ordinal of the row among the data rows of its stream (a CSV header is
	// not a data row; blank JSONL lines are skipped and not counted).
	Num int64
	// Cells has one entry per schema field.
	Cells []RawCell
	// Extra holds columns the schema does not name, in input order.
	Extra []RawExtra
	// ParseErr is non-empty when the row could not be parsed at all; Text then holds (a prefix
	// of) its raw text and Cells are all absent.
	ParseErr string
	// Text is the raw text of an unparsable row, for the violation report.
	Text []byte
}

// Reset prepares r for a row of a schema with n fields: all cells absent, no extras, no error.
func (r *RawRow) Reset(n int) {
	if cap(r.Cells) < n {
		r.Cells = make([]RawCell, n)
	}
	r.Cells = r.Cells[:n]
	clear(r.Cells)
	r.Extra = r.Extra[:0]
	r.ParseErr = ""
	r.Text = r.Text[:0]
}
