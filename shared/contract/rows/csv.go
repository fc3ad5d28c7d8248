package rows

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strconv"
	"unsafe"

	"github.com/driftline/driftline/shared/contract"
)

// CSV reads CSV with a header row (RFC 4180 quoting, CRLF or LF, an optional UTF-8 BOM) using
// encoding/csv. Columns are matched to fields by header name; a field with no column is absent
// in every row (rule "missing_column"), a column with no field is an extra column. A record with
// broken quoting is a "parse" row and reading goes on after it.
type CSV struct {
	cr       *csv.Reader
	nf       int
	index    map[string]int
	colField []int    // header column → field index, or -1
	header   [][]byte // header names, for extra columns
	n        int64
	started  bool
}

// NewCSV returns a CSV reader of r for schema s.
func NewCSV(r io.Reader, s *contract.Schema) *CSV {
	cr := csv.NewReader(&lineLimiter{r: newBuffered(r), max: maxLine})
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = true
	idx := make(map[string]int, len(s.Fields))
	for i, f := range s.Fields {
		idx[f.Name] = i
	}
	return &CSV{cr: cr, nf: len(s.Fields), index: idx}
}

// Next implements Reader.
func (c *CSV) Next(row *contract.RawRow) error {
	if !c.started {
		if err := c.readHeader(); err != nil {
			return err
		}
	}
	rec, err := c.cr.Read()
	if err != nil {
		var pe *csv.ParseError
		if !errors.As(err, &pe) {
			return err
		}
		c.n++
		row.Num = c.n
		setParseErr(row, c.nf, err.Error(), nil)
		return nil
	}
	row.Reset(c.nf)
	c.n++
	row.Num = c.n
	for j, cell := range rec {
		b := unsafe.Slice(unsafe.StringData(cell), len(cell)) // read-only view, see RawCell
		if j < len(c.colField) && c.colField[j] >= 0 {
			row.Cells[c.colField[j]] = contract.RawCell{Kind: contract.RawString, Data: b}
			continue
		}
		var name []byte
		if j < len(c.header) {
			name = c.header[j]
		} else {
			name = []byte("column " + strconv.Itoa(j+1))
		}
		row.Extra = append(row.Extra, contract.RawExtra{Name: name, Value: b})
	}
	return nil
}

// readHeader reads the header row and maps its columns to fields. A repeated column name maps
// only its first occurrence; later ones are extra columns.
func (c *CSV) readHeader() error {
	c.started = true
	rec, err := c.cr.Read()
	if errors.Is(err, io.EOF) {
		return io.EOF
	}
	if err != nil {
		var pe *csv.ParseError
		if errors.As(err, &pe) {
			return fmt.Errorf("%w: %v", ErrBadHeader, err)
		}
		return err
	}
	seen := make([]bool, c.nf)
	for _, name := range rec {
		c.header = append(c.header, []byte(name))
		f, ok := c.index[name]
		if !ok || seen[f] {
			c.colField = append(c.colField, -1)
			continue
		}
		seen[f] = true
		c.colField = append(c.colField, f)
	}
	return nil
}

// lineLimiter fails a read once a line grows past max bytes, so a file without newlines
// cannot make encoding/csv buffer it whole.
type lineLimiter struct {
	r   io.Reader
	max int
	run int
}

// Read passes reads through, failing with ErrLineTooLong once the current line exceeds max.
func (l *lineLimiter) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	if i := bytes.LastIndexByte(p[:n], '\n'); i >= 0 {
		l.run = n - 1 - i
	} else {
		l.run += n
	}
	if l.run > l.max {
		return n, fmt.Errorf("%w: a line exceeds %d bytes", ErrLineTooLong, l.max)
	}
	return n, err
}
