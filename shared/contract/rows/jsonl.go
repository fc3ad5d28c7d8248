package rows

import (
	"bufio"
	"errors"
	"fmt"
	"io"

	"github.com/driftline/driftline/shared/contract"
)

// JSONL reads one JSON object per line. Blank lines are skipped; a line that is not one JSON
// object (malformed, an array, trailing text, longer than MaxLine) is a "parse" row and reading
// goes on with the next line.
type JSONL struct {
	br     *bufio.Reader
	sc     *objectScanner
	nf     int
	n      int64
	long   []byte // a line assembled across buffer fills
	tooBig bool
}

// NewJSONL returns a JSONL reader of r for schema s. A leading UTF-8 BOM is skipped.
func NewJSONL(r io.Reader, s *contract.Schema) *JSONL {
	return &JSONL{br: newBuffered(r), sc: newObjectScanner(s), nf: len(s.Fields)}
}

// Next implements Reader.
func (j *JSONL) Next(row *contract.RawRow) error {
	for {
		line, err := j.readLine()
		if len(line) == 0 && !j.tooBig {
			if err != nil {
				return err
			}
			continue
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		row.Reset(j.nf)
		j.n++
		row.Num = j.n
		if j.tooBig {
			setParseErr(row, j.nf, fmt.Sprintf("line longer than %d bytes", maxLine), line)
			return nil
		}
		end, perr := j.sc.scan(line, row)
		if perr == nil && skipSpace(line, end) != len(line) {
			perr = &syntaxError{end, "text after the object"}
		}
		if perr != nil {
			setParseErr(row, j.nf, perr.Error(), line)
		}
		return nil
	}
}

// readLine returns the next line without its end-of-line bytes and surrounding blanks. The line
// is valid until the next call. A line over MaxLine is read to its end but only its first
// MaxLine bytes are kept, and tooBig is set. At the end of input it returns io.EOF together
// with any last unterminated line.
func (j *JSONL) readLine() ([]byte, error) {
	j.tooBig = false
	line, err := j.br.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		j.long = append(j.long[:0], line...)
		for errors.Is(err, bufio.ErrBufferFull) {
			line, err = j.br.ReadSlice('\n')
			if len(j.long)+len(line) > maxLine {
				j.tooBig = true
				continue
			}
			j.long = append(j.long, line...)
		}
		line = j.long
	}
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return trimSpace(line), err
}

// trimSpace drops JSON whitespace (not Unicode spaces, which JSON does not allow) at both ends.
func trimSpace(b []byte) []byte {
	b = b[skipSpace(b, 0):]
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t' || b[len(b)-1] == '\r' || b[len(b)-1] == '\n') {
		b = b[:len(b)-1]
	}
	return b
}
