// Package rows reads outside input (CSV, JSONL, JSON arrays, MQTT payloads) into
// contract.RawRow values, one row at a time, in constant memory. A row that cannot be parsed is
// returned as a row with ParseErr set (rule "parse"), never as an error: only I/O failures,
// an unreadable CSV header and over-long lines in CSV end a stream.
package rows

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/driftline/driftline/shared/contract"
)

// Sentinel errors of the package.
var (
	// ErrUnknownFormat: a file name's extension names no format this package reads.
	ErrUnknownFormat = errors.New("unknown data format")
	// ErrBadHeader: a CSV header row could not be read.
	ErrBadHeader = errors.New("bad CSV header")
	// ErrLineTooLong: a CSV line exceeds MaxLine bytes (CSV cannot resynchronise past it).
	ErrLineTooLong = errors.New("line too long")
)

// MaxLine is the most bytes one row (a JSONL line, a JSON array element, a CSV line) may have.
// A longer JSONL line or array element becomes a "parse" row; a longer CSV line ends the stream
// with ErrLineTooLong.
const MaxLine = 16 << 20

// maxLine is MaxLine, lowered by tests.
var maxLine = MaxLine

// maxText is the most bytes of an unparsable row kept in RawRow.Text.
const maxText = contract.MaxViolationValue

// Reader yields the rows of one stream.
type Reader interface {
	// Next fills row (which it Resets) with the next row and returns nil, or returns io.EOF
	// at the end of the stream, or another error when the stream cannot go on. The row's
	// cells stay valid until the next call.
	Next(row *contract.RawRow) error
}

// Format is a kind of input.
type Format int

// Formats Open reads.
const (
	// FormatJSON is JSONL or a JSON array of objects, told apart by the first byte.
	FormatJSON Format = iota + 1
	// FormatCSV is CSV with a header row.
	FormatCSV
	// FormatJSONL is one JSON object per line.
	FormatJSONL
	// FormatJSONArray is one JSON array of objects.
	FormatJSONArray
)

// FormatOf picks the format from a file name: .csv, .jsonl or .ndjson, .json.
func FormatOf(name string) (Format, error) {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".csv":
		return FormatCSV, nil
	case ".jsonl", ".ndjson":
		return FormatJSONL, nil
	case ".json":
		return FormatJSON, nil
	}
	return 0, fmt.Errorf("%w: %q (want .csv, .jsonl, .ndjson or .json)", ErrUnknownFormat, name)
}

// Open returns a Reader of r in format f for schema s.
func Open(r io.Reader, f Format, s *contract.Schema) (Reader, error) {
	switch f {
	case FormatCSV:
		return NewCSV(r, s), nil
	case FormatJSONL:
		return NewJSONL(r, s), nil
	case FormatJSONArray:
		return NewJSONArray(r, s), nil
	case FormatJSON:
		br := newBuffered(r)
		if b, err := peekNonSpace(br); err == nil && b == '[' {
			return NewJSONArray(br, s), nil
		}
		return NewJSONL(br, s), nil
	}
	return nil, fmt.Errorf("%w: %d", ErrUnknownFormat, f)
}

const bufSize = 64 << 10

// newBuffered wraps r in a bufio.Reader (reusing r if it is one) with a UTF-8 BOM skipped.
func newBuffered(r io.Reader) *bufio.Reader {
	br, ok := r.(*bufio.Reader)
	if !ok {
		br = bufio.NewReaderSize(r, bufSize)
	}
	if b, err := br.Peek(3); err == nil && string(b) == "\xef\xbb\xbf" {
		_, _ = br.Discard(3)
	}
	return br
}

// peekNonSpace skips whitespace and returns the next byte without consuming it.
func peekNonSpace(br *bufio.Reader) (byte, error) {
	for {
		b, err := br.ReadByte()
		if err != nil {
			return 0, err
		}
		switch b {
		case ' ', '\t', '\r', '\n':
			continue
		}
		return b, br.UnreadByte()
	}
}

// setParseErr turns row into an unparsable row with a copy of (a prefix of) text.
func setParseErr(row *contract.RawRow, n int, msg string, text []byte) {
	num := row.Num
	row.Reset(n)
	row.Num = num
	row.ParseErr = msg
	if len(text) > maxText {
		text = text[:maxText]
	}
	row.Text = append(row.Text[:0], text...)
}
