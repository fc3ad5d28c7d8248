package rows

import (
	"fmt"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/driftline/driftline/shared/contract"
)

// maxDepth bounds the nesting of values inside a row object.
const maxDepth = 512

// syntaxError is a JSON syntax error at a byte offset of the row text.
type syntaxError struct {
	off int
	msg string
}

// Error says where the JSON broke.
func (e *syntaxError) Error() string { return fmt.Sprintf("invalid JSON at byte %d: %s", e.off, e.msg) }

// objectScanner reads one JSON object into a RawRow without reflection or a map per row: keys
// are looked up in a name→field index and values are left as raw cells (strings unescaped into
// an arena sized to the input, so cells never move while the row is built).
type objectScanner struct {
	schema *contract.Schema // its name→field index is the scanner's: nothing to build per stream
	order  []int            // field index of the k-th key of the previous object, -1 for an extra key
	arena  []byte
	data   []byte
}

func newObjectScanner(s *contract.Schema) *objectScanner {
	return &objectScanner{schema: s}
}

// field maps the k-th key of an object to a field index (-1: not a field). Producers write keys
// in the same order row after row, so the previous row's k-th key is tried first: one string
// comparison instead of a map lookup.
func (sc *objectScanner) field(k int, key []byte) int {
	if k < len(sc.order) {
		if f := sc.order[k]; f >= 0 && sc.schema.Fields[f].Name == string(key) {
			return f
		}
	}
	f := sc.schema.IndexBytes(key)
	if k < len(sc.order) {
		sc.order[k] = f
	} else if k == len(sc.order) && k < 4*len(sc.schema.Fields)+8 {
		sc.order = append(sc.order, f)
	}
	return f
}

// scan parses the object at the start of data (after optional whitespace) into row, which the
// caller has Reset. It returns the offset after the object. Cells alias data and the scanner's
// arena: they are valid until the next scan.
func (sc *objectScanner) scan(data []byte, row *contract.RawRow) (int, error) {
	if cap(sc.arena) < len(data) {
		sc.arena = make([]byte, 0, len(data)+len(data)/4)
	}
	sc.arena = sc.arena[:0]
	sc.data = data
	i := skipSpace(data, 0)
	if i >= len(data) {
		return i, &syntaxError{i, "empty input, want an object"}
	}
	if data[i] != '{' {
		return i, &syntaxError{i, fmt.Sprintf("want an object, found %q", data[i])}
	}
	i = skipSpace(data, i+1)
	if i < len(data) && data[i] == '}' {
		return i + 1, nil
	}
	for k := 0; ; k++ {
		if i >= len(data) || data[i] != '"' {
			return i, sc.want(i, "a string key")
		}
		key, next, err := sc.str(i)
		if err != nil {
			return next, err
		}
		i = skipSpace(data, next)
		if i >= len(data) || data[i] != ':' {
			return i, sc.want(i, "':' after a key")
		}
		i = skipSpace(data, i+1)
		cell, next, err := sc.value(i)
		if err != nil {
			return next, err
		}
		if f := sc.field(k, key); f >= 0 {
			row.Cells[f] = cell
		} else {
			row.Extra = append(row.Extra, contract.RawExtra{Name: key, Value: data[i:next]})
		}
		i = skipSpace(data, next)
		if i >= len(data) {
			return i, sc.want(i, "',' or '}'")
		}
		switch data[i] {
		case ',':
			i = skipSpace(data, i+1)
		case '}':
			return i + 1, nil
		default:
			return i, sc.want(i, "',' or '}'")
		}
	}
}

func (sc *objectScanner) want(i int, what string) error {
	if i >= len(sc.data) {
		return &syntaxError{i, "unexpected end, want " + what}
	}
	return &syntaxError{i, fmt.Sprintf("found %q, want %s", sc.data[i], what)}
}

// value reads the value at i into a cell.
func (sc *objectScanner) value(i int) (contract.RawCell, int, error) {
	data := sc.data
	if i >= len(data) {
		return contract.RawCell{}, i, sc.want(i, "a value")
	}
	switch c := data[i]; {
	case c == '"':
		s, next, err := sc.str(i)
		return contract.RawCell{Kind: contract.RawString, Data: s}, next, err
	case c == '-' || (c >= '0' && c <= '9'):
		next, err := number(data, i)
		return contract.RawCell{Kind: contract.RawNumber, Data: data[i:next]}, next, err
	case c == 't':
		next, err := literal(data, i, "true")
		return contract.RawCell{Kind: contract.RawBool, Data: data[i:next]}, next, err
	case c == 'f':
		next, err := literal(data, i, "false")
		return contract.RawCell{Kind: contract.RawBool, Data: data[i:next]}, next, err
	case c == 'n':
		next, err := literal(data, i, "null")
		return contract.RawCell{Kind: contract.RawNull}, next, err
	case c == '{' || c == '[':
		next, err := skipValue(data, i, 0)
		return contract.RawCell{Kind: contract.RawComplex, Data: data[i:next]}, next, err
	}
	return contract.RawCell{}, i, sc.want(i, "a value")
}

// str reads the string starting with the quote at i. Without escapes it returns a slice of the
// input; with escapes, the unescaped text in the arena. Invalid UTF-8 is passed through for
// the validator to report (rule "encoding").
func (sc *objectScanner) str(i int) ([]byte, int, error) {
	data := sc.data
	start := i + 1
	for j := start; j < len(data); j++ {
		switch c := data[j]; {
		case c == '"':
			return data[start:j], j + 1, nil
		case c == '\\':
			return sc.unescape(start, j)
		case c < 0x20:
			return nil, j, &syntaxError{j, "control character in string"}
		}
	}
	return nil, len(data), &syntaxError{len(data), "unterminated string"}
}

// unescape copies data[start:j] and the rest of the string, decoding escapes, into the arena.
func (sc *objectScanner) unescape(start, j int) ([]byte, int, error) {
	data := sc.data
	a0 := len(sc.arena)
	sc.arena = append(sc.arena, data[start:j]...)
	for j < len(data) {
		c := data[j]
		switch {
		case c == '"':
			return sc.arena[a0:len(sc.arena):len(sc.arena)], j + 1, nil
		case c < 0x20:
			return nil, j, &syntaxError{j, "control character in string"}
		case c != '\\':
			sc.arena = append(sc.arena, c)
			j++
			continue
		}
		if j+1 >= len(data) {
			break
		}
		switch e := data[j+1]; e {
		case '"', '\\', '/':
			sc.arena = append(sc.arena, e)
		case 'b':
			sc.arena = append(sc.arena, '\b')
		case 'f':
			sc.arena = append(sc.arena, '\f')
		case 'n':
			sc.arena = append(sc.arena, '\n')
		case 'r':
			sc.arena = append(sc.arena, '\r')
		case 't':
			sc.arena = append(sc.arena, '\t')
		case 'u':
			r, ok := hex4(data, j+2)
			if !ok {
				return nil, j, &syntaxError{j, "bad \\u escape"}
			}
			j += 6
			if utf16.IsSurrogate(r) {
				if r2, ok := hex4(data, j+2); ok && j+1 < len(data) && data[j] == '\\' && data[j+1] == 'u' {
					if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
						j += 6
						r = dec
					} else {
						r = utf8.RuneError
					}
				} else {
					r = utf8.RuneError
				}
			}
			sc.arena = utf8.AppendRune(sc.arena, r)
			continue
		default:
			return nil, j, &syntaxError{j, fmt.Sprintf("bad escape \\%c", e)}
		}
		j += 2
	}
	return nil, len(data), &syntaxError{len(data), "unterminated string"}
}

func hex4(data []byte, i int) (rune, bool) {
	if i+4 > len(data) {
		return 0, false
	}
	var r rune
	for _, c := range data[i : i+4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		case c >= 'A' && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// number checks the JSON number grammar -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? at i.
func number(data []byte, i int) (int, error) {
	start := i
	if data[i] == '-' {
		i++
	}
	switch {
	case i < len(data) && data[i] == '0':
		i++
	case i < len(data) && data[i] >= '1' && data[i] <= '9':
		for i < len(data) && isDigit(data[i]) {
			i++
		}
	default:
		return i, &syntaxError{start, "bad number"}
	}
	if i < len(data) && data[i] == '.' {
		i++
		d := i
		for i < len(data) && isDigit(data[i]) {
			i++
		}
		if i == d {
			return i, &syntaxError{start, "bad number: no digits after '.'"}
		}
	}
	if i < len(data) && (data[i] == 'e' || data[i] == 'E') {
		i++
		if i < len(data) && (data[i] == '+' || data[i] == '-') {
			i++
		}
		d := i
		for i < len(data) && isDigit(data[i]) {
			i++
		}
		if i == d {
			return i, &syntaxError{start, "bad number: no exponent digits"}
		}
	}
	return i, nil
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func literal(data []byte, i int, lit string) (int, error) {
	if len(data)-i >= len(lit) && string(data[i:i+len(lit)]) == lit {
		return i + len(lit), nil
	}
	return i, &syntaxError{i, "bad literal, want " + lit}
}

// skipValue checks and skips any JSON value at i (used for nested objects and arrays).
func skipValue(data []byte, i, depth int) (int, error) {
	if depth > maxDepth {
		return i, &syntaxError{i, "nested too deeply"}
	}
	if i >= len(data) {
		return i, &syntaxError{i, "unexpected end, want a value"}
	}
	switch c := data[i]; {
	case c == '"':
		for j := i + 1; j < len(data); j++ {
			switch data[j] {
			case '"':
				return j + 1, nil
			case '\\':
				j++
			default:
				if data[j] < 0x20 {
					return j, &syntaxError{j, "control character in string"}
				}
			}
		}
		return len(data), &syntaxError{len(data), "unterminated string"}
	case c == '-' || isDigit(c):
		return number(data, i)
	case c == 't':
		return literal(data, i, "true")
	case c == 'f':
		return literal(data, i, "false")
	case c == 'n':
		return literal(data, i, "null")
	case c == '{' || c == '[':
		closer := byte('}')
		if c == '[' {
			closer = ']'
		}
		i = skipSpace(data, i+1)
		if i < len(data) && data[i] == closer {
			return i + 1, nil
		}
		for {
			if c == '{' {
				if i >= len(data) || data[i] != '"' {
					return i, &syntaxError{i, "want a string key"}
				}
				next, err := skipValue(data, i, depth+1)
				if err != nil {
					return next, err
				}
				i = skipSpace(data, next)
				if i >= len(data) || data[i] != ':' {
					return i, &syntaxError{i, "want ':' after a key"}
				}
				i = skipSpace(data, i+1)
			}
			next, err := skipValue(data, i, depth+1)
			if err != nil {
				return next, err
			}
			i = skipSpace(data, next)
			if i >= len(data) {
				return i, &syntaxError{i, "unexpected end in " + string(c)}
			}
			if data[i] == closer {
				return i + 1, nil
			}
			if data[i] != ',' {
				return i, &syntaxError{i, fmt.Sprintf("found %q, want ',' or %q", data[i], closer)}
			}
			i = skipSpace(data, i+1)
		}
	}
	return i, &syntaxError{i, fmt.Sprintf("found %q, want a value", data[i])}
}

func skipSpace(data []byte, i int) int {
	for i < len(data) {
		switch data[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}
