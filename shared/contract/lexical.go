package contract

import (
	"bytes"
	"encoding/base64"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
	"unsafe"
)

// Default boolean spellings of the Table Schema.
var (
	defaultTrueValues  = []string{"true", "True", "TRUE", "1"}
	defaultFalseValues = []string{"false", "False", "FALSE", "0"}
)

// caster converts raw cells into Values. It owns a scratch buffer and an optional string interner
// so that the hot path allocates only for strings it has not seen before.
type caster struct {
	buf    []byte
	intern map[string]string
}

// maxInterned bounds the interner: past it, new strings are allocated and not kept.
const maxInterned = 4096

// str returns b as a string, reusing an earlier equal string when it can.
func (c *caster) str(b []byte) string {
	if c.intern == nil {
		return string(b)
	}
	if s, ok := c.intern[string(b)]; ok {
		return s
	}
	s := string(b)
	if len(c.intern) < maxInterned && len(s) <= 64 {
		c.intern[s] = s
	}
	return s
}

// view returns b as a string without copying. The string must not outlive the call that made it.
func view(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// cast converts a present, non-missing cell of field f. ok is false when the cell is not a
// value of the field's type (rule "type").
func (c *caster) cast(f *Field, cell RawCell) (v Value, ok bool) {
	switch f.Type {
	case TypeString:
		if cell.Kind != RawString || !checkStringFormat(f.Format, cell.Data, c) {
			return Value{}, false
		}
		return Value{Kind: KindString, Str: c.str(cell.Data)}, true
	case TypeNumber:
		var x float64
		switch cell.Kind {
		case RawNumber:
			x, ok = parseFloat(cell.Data)
		case RawString:
			x, ok = c.lexicalNumber(f, cell.Data, false)
		}
		return Value{Kind: KindNumber, Num: x}, ok
	case TypeInteger:
		var x float64
		switch cell.Kind {
		case RawNumber:
			x, ok = jsonInteger(cell.Data)
		case RawString:
			x, ok = c.lexicalNumber(f, cell.Data, true)
		}
		return Value{Kind: KindNumber, Num: x}, ok
	case TypeBoolean:
		switch cell.Kind {
		case RawBool:
			return Value{Kind: KindBool, Bool: len(cell.Data) > 0 && cell.Data[0] == 't'}, true
		case RawString:
			s := view(cell.Data)
			if slices.Contains(f.c.trueV, s) {
				return Value{Kind: KindBool, Bool: true}, true
			}
			if slices.Contains(f.c.falseV, s) {
				return Value{Kind: KindBool}, true
			}
		}
		return Value{}, false
	case TypeDatetime, TypeDate:
		if cell.Kind != RawString {
			return Value{}, false
		}
		ms, ok := f.c.timeFmt.parse(view(cell.Data))
		return Value{Kind: KindTime, Num: ms}, ok
	}
	return Value{}, false
}

// parseFloat reads a decimal number (grammar already checked).
func parseFloat(b []byte) (float64, bool) {
	if x, ok := fastFloat(b); ok {
		return x, true
	}
	x, err := strconv.ParseFloat(view(b), 64)
	return x, err == nil
}

// pow10 holds the powers of ten that float64 represents exactly.
var pow10 = [...]float64{1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
	1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22}

// fastFloat reads -?digits(.digits)? with at most 15 significant digits exactly: the mantissa
// and the power of ten are both exact in a float64, so one correctly rounded division gives the
// correctly rounded result (Clinger's fast path, as strconv uses). Anything else returns false.
func fastFloat(b []byte) (float64, bool) {
	i, neg := 0, false
	if len(b) > 0 && b[0] == '-' {
		neg, i = true, 1
	}
	var m uint64
	digits, frac, dot, sawDigit := 0, 0, false, false
	for ; i < len(b); i++ {
		c := b[i]
		switch {
		case c >= '0' && c <= '9':
			if digits > 0 || c != '0' {
				digits++
			}
			m = m*10 + uint64(c-'0')
			sawDigit = true
			if dot {
				frac++
			}
		case c == '.' && !dot:
			dot = true
		default:
			return 0, false
		}
	}
	if !sawDigit || digits > 15 || frac >= len(pow10) || (dot && frac == 0) {
		return 0, false
	}
	x := float64(m) / pow10[frac]
	if neg {
		x = -x
	}
	return x, true
}

// jsonInteger reads a JSON number as an integer: 3, 3.0 and 3e2 are integers, 3.5 is not.
func jsonInteger(b []byte) (float64, bool) {
	if bytes.ContainsAny(b, ".eE") {
		x, ok := parseFloat(b)
		if !ok || x != math.Trunc(x) || math.IsInf(x, 0) {
			return 0, false
		}
		return x, true
	}
	n, err := strconv.ParseInt(view(b), 10, 64)
	if err != nil {
		// Beyond int64: still an integer, read with float precision.
		return parseFloat(b)
	}
	return float64(n), true
}

// lexicalNumber reads the Table Schema lexical form of a number or integer: decimalChar,
// groupChar, bareNumber; "NaN", "INF" and "-INF" for numbers.
func (c *caster) lexicalNumber(f *Field, b []byte, integer bool) (float64, bool) {
	if !integer {
		switch view(b) {
		case "NaN":
			return math.NaN(), true
		case "INF":
			return math.Inf(1), true
		case "-INF":
			return math.Inf(-1), true
		}
	}
	if !f.BareNumber {
		b = trimNonNumeric(b)
	}
	if f.GroupChar != "" || (f.DecimalChar != "" && f.DecimalChar != ".") {
		c.buf = c.buf[:0]
		for i := 0; i < len(b); {
			switch {
			case f.GroupChar != "" && strings.HasPrefix(view(b[i:]), f.GroupChar):
				i += len(f.GroupChar)
			case f.DecimalChar != "" && strings.HasPrefix(view(b[i:]), f.DecimalChar):
				c.buf = append(c.buf, '.')
				i += len(f.DecimalChar)
			default:
				c.buf = append(c.buf, b[i])
				i++
			}
		}
		b = c.buf
	}
	if integer {
		if !isInteger(b) {
			return 0, false
		}
		n, err := strconv.ParseInt(view(b), 10, 64)
		if err != nil {
			return parseFloat(b)
		}
		return float64(n), true
	}
	if !isDecimal(b) {
		return 0, false
	}
	return parseFloat(b)
}

// trimNonNumeric drops leading and trailing text around a number ("€ 12.5", "95 %").
func trimNonNumeric(b []byte) []byte {
	i := 0
	for i < len(b) && !isDigit(b[i]) && b[i] != '-' && b[i] != '+' && b[i] != '.' && b[i] != ',' {
		i++
	}
	j := len(b)
	for j > i && !isDigit(b[j-1]) {
		j--
	}
	return b[i:j]
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// isInteger checks [+-]?[0-9]+.
func isInteger(b []byte) bool {
	if len(b) > 0 && (b[0] == '+' || b[0] == '-') {
		b = b[1:]
	}
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if !isDigit(c) {
			return false
		}
	}
	return true
}

// isDecimal checks [+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?, which keeps out what
// strconv would also accept (hex floats, "inf", underscores).
func isDecimal(b []byte) bool {
	i := 0
	if i < len(b) && (b[i] == '+' || b[i] == '-') {
		i++
	}
	digits := 0
	for i < len(b) && isDigit(b[i]) {
		i++
		digits++
	}
	if i < len(b) && b[i] == '.' {
		i++
		for i < len(b) && isDigit(b[i]) {
			i++
			digits++
		}
	}
	if digits == 0 {
		return false
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		exp := 0
		for i < len(b) && isDigit(b[i]) {
			i++
			exp++
		}
		if exp == 0 {
			return false
		}
	}
	return i == len(b)
}

// checkStringFormat checks the Table Schema string formats.
func checkStringFormat(format string, b []byte, c *caster) bool {
	switch format {
	case "", "default":
		return true
	case "email":
		at := bytes.IndexByte(b, '@')
		return at > 0 && at == bytes.LastIndexByte(b, '@') && at < len(b)-1 &&
			!bytes.ContainsAny(b, " \t\r\n") && bytes.IndexByte(b[at:], '.') > 1
	case "uri":
		return isURI(b)
	case "uuid":
		return isUUID(b)
	case "binary":
		n := base64.StdEncoding.DecodedLen(len(b))
		if cap(c.buf) < n {
			c.buf = make([]byte, n)
		}
		_, err := base64.StdEncoding.Decode(c.buf[:n], b)
		return err == nil
	}
	return false
}

// isURI checks an absolute URI: a scheme (RFC 3986 section 3.1), a colon, and no spaces.
func isURI(b []byte) bool {
	colon := bytes.IndexByte(b, ':')
	if colon < 1 || !utf8.Valid(b) || bytes.ContainsAny(b, " \t\r\n") {
		return false
	}
	for i, ch := range b[:colon] {
		alpha := (ch|0x20) >= 'a' && (ch|0x20) <= 'z'
		if !alpha && (i == 0 || (!isDigit(ch) && ch != '+' && ch != '-' && ch != '.')) {
			return false
		}
	}
	return true
}

// isUUID checks the 8-4-4-4-12 hex form.
func isUUID(b []byte) bool {
	if len(b) != 36 {
		return false
	}
	for i, ch := range b {
		if i == 8 || i == 13 || i == 18 || i == 23 {
			if ch != '-' {
				return false
			}
			continue
		}
		if !isDigit(ch) && ((ch|0x20) < 'a' || (ch|0x20) > 'f') {
			return false
		}
	}
	return true
}
