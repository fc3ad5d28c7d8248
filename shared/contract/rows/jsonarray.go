package rows

import (
	"bufio"
	"errors"
	"fmt"
	"io"

	"github.com/driftline/driftline/shared/contract"
)

// JSONArray reads a JSON array of objects element by element, holding one element in memory at
// a time. An element that is not a valid object is a "parse" row and reading goes on with the
// next element. A break in the array itself (no '[', a missing ',', the input ending inside the
// array) is a last "parse" row: the stream cannot be resynchronised after it.
type JSONArray struct {
	br      *bufio.Reader
	sc      *objectScanner
	nf      int
	n       int64
	elem    []byte
	started bool
	done    bool
}

// NewJSONArray returns a reader of the JSON array in r for schema s.
func NewJSONArray(r io.Reader, s *contract.Schema) *JSONArray {
	return &JSONArray{br: newBuffered(r), sc: newObjectScanner(s), nf: len(s.Fields)}
}

// Next implements Reader.
func (a *JSONArray) Next(row *contract.RawRow) error {
	if a.done {
		return io.EOF
	}
	row.Reset(a.nf)
	if !a.started {
		a.started = true
		b, err := peekNonSpace(a.br)
		if err != nil {
			return a.end(row, err, "empty input, want a JSON array")
		}
		if b != '[' {
			return a.fail(row, fmt.Sprintf("found %q, want '[' to start a JSON array", b))
		}
		_, _ = a.br.ReadByte()
		if b, err := peekNonSpace(a.br); err == nil && b == ']' {
			_, _ = a.br.ReadByte()
			return a.finish(row)
		}
	} else {
		b, err := peekNonSpace(a.br)
		if err != nil {
			return a.end(row, err, "input ends inside the array")
		}
		_, _ = a.br.ReadByte()
		switch b {
		case ']':
			return a.finish(row)
		case ',':
		default:
			return a.fail(row, fmt.Sprintf("found %q between elements, want ',' or ']'", b))
		}
	}
	tooBig, err := a.readElement()
	if err != nil {
		return a.end(row, err, "input ends inside an element")
	}
	a.n++
	row.Num = a.n
	if tooBig {
		setParseErr(row, a.nf, fmt.Sprintf("element longer than %d bytes", maxLine), a.elem)
		return nil
	}
	end, perr := a.sc.scan(a.elem, row)
	if perr == nil && skipSpace(a.elem, end) != len(a.elem) {
		perr = &syntaxError{end, "text after the object"}
	}
	if perr != nil {
		setParseErr(row, a.nf, perr.Error(), a.elem)
	}
	return nil
}

// finish ends the stream after the closing ']': io.EOF, or a last parse row if text follows.
func (a *JSONArray) finish(row *contract.RawRow) error {
	if _, err := peekNonSpace(a.br); err == nil {
		return a.fail(row, "text after the array")
	}
	a.done = true
	return io.EOF
}

// end turns a read error into either a last parse row (the input was cut short) or the error.
func (a *JSONArray) end(row *contract.RawRow, err error, msg string) error {
	if errors.Is(err, io.EOF) {
		return a.fail(row, msg)
	}
	a.done = true
	return err
}

// fail emits a last parse row: the array is broken and cannot be read further.
func (a *JSONArray) fail(row *contract.RawRow, msg string) error {
	a.done = true
	a.n++
	row.Num = a.n
	text, _ := a.br.Peek(maxText)
	setParseErr(row, a.nf, msg, append(a.elem[:0], text...))
	return nil
}

// readElement reads one element's bytes into a.elem: a container up to its closing bracket, a
// scalar up to the ',' or ']' that follows it. Bytes past MaxLine are dropped and tooBig set.
func (a *JSONArray) readElement() (tooBig bool, err error) {
	a.elem = a.elem[:0]
	depth, inStr, esc := 0, false, false
	for {
		b, err := a.br.ReadByte()
		if err != nil {
			return tooBig, err
		}
		switch {
		case inStr:
			switch {
			case esc:
				esc = false
			case b == '\\':
				esc = true
			case b == '"':
				inStr = false
			}
		case b == '"':
			inStr = true
		case b == '{' || b == '[':
			depth++
		case b == '}' || b == ']':
			if depth == 0 {
				return tooBig, a.br.UnreadByte()
			}
			depth--
			if depth == 0 {
				a.keep(b, &tooBig)
				return tooBig, nil
			}
		case b == ',' && depth == 0:
			return tooBig, a.br.UnreadByte()
		}
		a.keep(b, &tooBig)
	}
}

// keep appends b to the element unless it is already MaxLine long.
func (a *JSONArray) keep(b byte, tooBig *bool) {
	if len(a.elem) < maxLine {
		a.elem = append(a.elem, b)
	} else {
		*tooBig = true
	}
}
