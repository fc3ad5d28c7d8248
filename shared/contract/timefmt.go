package contract

import (
	"fmt"
	"strings"
	"time"
)

// timeFormat says how a date or datetime field reads its text.
type timeFormat struct {
	// layouts are tried in order; the first that parses wins.
	layouts []string
	// dateOnly truncates the result to midnight UTC of the parsed calendar date.
	dateOnly bool
}

// Layouts tried by format "any". A layout without a zone reads the time as UTC.
var (
	anyDatetimeLayouts = []string{
		time.RFC3339Nano,
		"2006-01-02T15:04:05.999999999",
		"2006-01-02 15:04:05.999999999Z07:00",
		"2006-01-02 15:04:05.999999999",
		"2006-01-02T15:04Z07:00",
		"2006-01-02T15:04",
		"2006-01-02 15:04",
		"2006-01-02",
		time.RFC1123Z,
		time.RFC1123,
		time.RFC850,
		time.ANSIC,
		"2006/01/02 15:04:05",
		"2006/01/02",
	}
	anyDateLayouts = []string{
		"2006-01-02",
		"2006/01/02",
		"20060102",
		"2 Jan 2006",
		"Jan 2 2006",
		"Jan 2, 2006",
		"2 January 2006",
		"January 2, 2006",
	}
)

// newTimeFormat compiles a Table Schema date or datetime format.
func newTimeFormat(typ, format string) (timeFormat, error) {
	tf := timeFormat{dateOnly: typ == TypeDate}
	switch format {
	case "", "default":
		if tf.dateOnly {
			tf.layouts = []string{"2006-01-02"}
		} else {
			tf.layouts = []string{time.RFC3339Nano}
		}
	case "any":
		if tf.dateOnly {
			tf.layouts = anyDateLayouts
		} else {
			tf.layouts = anyDatetimeLayouts
		}
	default:
		layout, err := strftimeLayout(strings.TrimPrefix(format, "fmt:"))
		if err != nil {
			return tf, err
		}
		tf.layouts = []string{layout}
	}
	return tf, nil
}

// parse reads s; ms is Unix milliseconds (fractional below a millisecond).
func (tf *timeFormat) parse(s string) (ms float64, ok bool) {
	for _, l := range tf.layouts {
		t, err := time.Parse(l, s)
		if err != nil {
			continue
		}
		if tf.dateOnly {
			y, m, d := t.Date()
			t = time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
		}
		return float64(t.Unix())*1000 + float64(t.Nanosecond())/1e6, true
	}
	return 0, false
}

// strftimeLayout turns a Python-style strftime pattern (what Table Schema uses) into a Go time
// layout. It refuses directives it cannot express and literal text that Go would read as a
// layout element, so a pattern never silently means something else.
func strftimeLayout(p string) (string, error) {
	if !strings.Contains(p, "%") {
		return "", fmt.Errorf("format %q is not \"default\", \"any\" or a strftime pattern with %% directives", p)
	}
	var b strings.Builder
	lit := func(s string) error {
		for _, tok := range goLayoutTokens {
			if strings.Contains(s, tok) {
				return fmt.Errorf("format %q: literal text %q cannot be expressed in a Go layout", p, s)
			}
		}
		b.WriteString(s)
		return nil
	}
	start := 0
	for i := 0; i < len(p); i++ {
		if p[i] != '%' {
			continue
		}
		if err := lit(p[start:i]); err != nil {
			return "", err
		}
		if i+1 >= len(p) {
			return "", fmt.Errorf("format %q ends with a lone %%", p)
		}
		d := p[i+1]
		i++
		start = i + 1
		if d == 'f' {
			s := b.String()
			if !strings.HasSuffix(s, ".") && !strings.HasSuffix(s, ",") {
				return "", fmt.Errorf("format %q: %%f must follow '.' or ','", p)
			}
			// Go reads a variable-length fraction from ".999999" (the separator belongs to it).
			b.WriteString("999999")
			continue
		}
		g, ok := strftimeDirectives[d]
		if !ok {
			return "", fmt.Errorf("format %q: unsupported directive %%%c", p, d)
		}
		b.WriteString(g)
	}
	if err := lit(p[start:]); err != nil {
		return "", err
	}
	return b.String(), nil
}

var strftimeDirectives = map[byte]string{
	'Y': "2006", 'y': "06", 'm': "01", 'd': "02", 'e': "_2", 'H': "15", 'I': "03", 'M': "04",
	'S': "05", 'p': "PM", 'b': "Jan", 'h': "Jan", 'B': "January", 'a': "Mon", 'A': "Monday",
	'z': "-0700", 'Z': "MST", 'j': "002", 'F': "2006-01-02", 'T': "15:04:05", '%': "%",
}

// goLayoutTokens are strings Go's time package treats as layout elements.
var goLayoutTokens = []string{
	"Jan", "Mon", "MST", "PM", "pm", "2006", "06", "01", "02", "03", "04", "05", "15",
	"1", "2", "3", "4", "5", "-07", "Z07", "_2", "002",
}
