package contract

// Kind is the kind of a typed cell after validation.
type Kind uint8

// Kinds of Value. The zero Value is a null.
const (
	// KindNull is a missing value (empty cell, JSON null, or one of the schema's missingValues).
	KindNull Kind = iota
	// KindNumber is a `number` or `integer` field; Num holds it.
	KindNumber
	// KindString is a `string` field; Str holds it.
	KindString
	// KindBool is a `boolean` field; Bool holds it.
	KindBool
	// KindTime is a `datetime` or `date` field; Num holds Unix milliseconds (UTC).
	KindTime
)

// Value is one typed cell of a validated row. Rows are passed as []Value indexed like
// Schema.Fields, so validation and profiling allocate no map per row.
type Value struct {
	Kind Kind
	Num  float64
	Str  string
	Bool bool
}

// IsNull reports whether v is a missing value.
func (v Value) IsNull() bool { return v.Kind == KindNull }
