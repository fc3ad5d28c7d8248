package raftstore

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
)

// logFormat is byte 0 of every stored log value. Bump it, and keep decoding the old one, if the
// layout below changes.
const logFormat byte = 1

// maxField bounds one length-prefixed field so a corrupt length cannot ask for a huge allocation.
const maxField = 1 << 30

// encodeLog returns the stored form of l (the index lives in the key):
//
//	format(1) | term(uvarint) | type(1) | len(data)(uvarint) data | len(ext)(uvarint) ext |
//	appendedAt Unix ns(varint, 0 when unset)
func encodeLog(l *raft.Log) []byte {
	out := make([]byte, 0, 1+3*binary.MaxVarintLen64+1+len(l.Data)+len(l.Extensions)+binary.MaxVarintLen64)
	out = append(out, logFormat)
	out = binary.AppendUvarint(out, l.Term)
	out = append(out, byte(l.Type))
	out = binary.AppendUvarint(out, uint64(len(l.Data)))
	out = append(out, l.Data...)
	out = binary.AppendUvarint(out, uint64(len(l.Extensions)))
	out = append(out, l.Extensions...)
	var at int64
	if !l.AppendedAt.IsZero() {
		at = l.AppendedAt.UnixNano()
	}
	return binary.AppendVarint(out, at)
}

// decodeLog parses the stored form of a log entry into l, copying every byte it keeps, so b may
// be reused by the caller afterwards. It returns ErrCorrupt (wrapped) on any malformed input.
func decodeLog(index uint64, b []byte, l *raft.Log) error {
	if len(b) < 1 {
		return fmt.Errorf("%w: log %d: empty value", ErrCorrupt, index)
	}
	if b[0] != logFormat {
		return fmt.Errorf("%w: log %d: unknown format %d", ErrCorrupt, index, b[0])
	}
	r := reader{b: b[1:]}
	term := r.uvarint()
	typ := r.byte()
	data := r.bytes()
	ext := r.bytes()
	at := r.varint()
	if r.err != "" {
		return fmt.Errorf("%w: log %d: %s", ErrCorrupt, index, r.err)
	}
	if len(r.b) != 0 {
		return fmt.Errorf("%w: log %d: %d trailing bytes", ErrCorrupt, index, len(r.b))
	}
	*l = raft.Log{Index: index, Term: term, Type: raft.LogType(typ), Data: data, Extensions: ext}
	if at != 0 {
		l.AppendedAt = time.Unix(0, at)
	}
	return nil
}

// reader walks a byte slice and records the first problem instead of panicking.
type reader struct {
	b   []byte
	err string
}

func (r *reader) uvarint() uint64 {
	if r.err != "" {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = "bad uvarint"
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) varint() int64 {
	if r.err != "" {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.err = "bad varint"
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) byte() byte {
	if r.err != "" {
		return 0
	}
	if len(r.b) < 1 {
		r.err = "truncated"
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

// bytes reads a length-prefixed field and returns a copy (nil when empty).
func (r *reader) bytes() []byte {
	n := r.uvarint()
	if r.err != "" {
		return nil
	}
	if n > maxField || n > uint64(len(r.b)) {
		r.err = "field length out of range"
		return nil
	}
	if n == 0 {
		return nil
	}
	v := make([]byte, n)
	copy(v, r.b[:n])
	r.b = r.b[n:]
	return v
}
