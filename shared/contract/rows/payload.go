package rows

import (
	"bufio"
	"bytes"
	"io"

	"github.com/driftline/driftline/shared/contract"
)

// Payload reads an MQTT data payload: one JSON object, or a JSON array of objects. Anything
// else is one "parse" row.
type Payload struct {
	sc    *objectScanner
	arr   *JSONArray
	data  []byte
	nf    int
	state int // 0 before the object, 1 after it, 2 array mode
}

// NewPayload returns a reader of payload p for schema s. p must not change while it is read.
func NewPayload(p []byte, s *contract.Schema) *Payload {
	pl := &Payload{sc: newObjectScanner(s), data: p, nf: len(s.Fields)}
	if i := skipSpace(p, 0); i < len(p) && p[i] == '[' {
		pl.arr = NewJSONArray(bufio.NewReaderSize(bytes.NewReader(p), max(16, min(len(p), bufSize))), s)
		pl.state = 2
	}
	return pl
}

// Next implements Reader.
func (p *Payload) Next(row *contract.RawRow) error {
	switch p.state {
	case 2:
		return p.arr.Next(row)
	case 1:
		return io.EOF
	}
	p.state = 1
	row.Reset(p.nf)
	row.Num = 1
	end, err := p.sc.scan(p.data, row)
	if err == nil && skipSpace(p.data, end) != len(p.data) {
		err = &syntaxError{end, "text after the object"}
	}
	if err != nil {
		setParseErr(row, p.nf, err.Error(), p.data)
	}
	return nil
}
