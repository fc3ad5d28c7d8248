package state

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
)

// AuditExportFormat names the audit export file format (first line of the file).
const AuditExportFormat = "driftline-audit-export/1"

// ErrBadExport means an audit export file is damaged, cut short or does not chain.
var ErrBadExport = errors.New("bad audit export")

// AuditExportHeader is the first line of an audit export: where its entries start in the chain.
type AuditExportHeader struct {
	Format   string `json:"format"`
	FirstSeq uint64 `json:"first_seq"`
	// PrevHash is the hash of entry FirstSeq-1 ("" when the export starts the log).
	PrevHash string `json:"prev_hash"`
}

// AuditExportTrailer is the last line of an audit export: its checkpoint. LastSeq and LastHash
// are what the pruning command names (RetentionPrune.AuditThrough, AuditHash) and what the hub
// keeps as its AuditCheckpoint; SHA256 covers every byte of the file before this line.
type AuditExportTrailer struct {
	End      bool   `json:"end"`
	Entries  int    `json:"entries"`
	LastSeq  uint64 `json:"last_seq"`
	LastHash string `json:"last_hash"`
	SHA256   string `json:"sha256"`
}

// AuditExportWriter writes an audit export: a header line, one JSON line per entry, a trailer.
// Add refuses an entry that does not chain from the one before, so a written export always
// verifies.
type AuditExportWriter struct {
	w    io.Writer
	sum  hash.Hash
	hdr  AuditExportHeader
	prev string
	next uint64
	n    int
}

// NewAuditExportWriter starts an export of the entries from firstSeq on, whose predecessor has
// hash prevHash.
func NewAuditExportWriter(w io.Writer, firstSeq uint64, prevHash string) (*AuditExportWriter, error) {
	if firstSeq == 0 {
		return nil, errors.New("audit export: entries start at seq 1")
	}
	x := &AuditExportWriter{w: w, sum: sha256.New(), prev: prevHash, next: firstSeq,
		hdr: AuditExportHeader{Format: AuditExportFormat, FirstSeq: firstSeq, PrevHash: prevHash}}
	return x, x.line(x.hdr)
}

func (x *AuditExportWriter) line(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	b = append(b, '\n')
	x.sum.Write(b)
	_, err = x.w.Write(b)
	return err
}

// Add appends the next entry.
func (x *AuditExportWriter) Add(e AuditEntry) error {
	if e.Seq != x.next {
		return fmt.Errorf("%w: entry %d where %d belongs", ErrBadExport, e.Seq, x.next)
	}
	if _, err := VerifyChain(x.prev, []AuditEntry{e}); err != nil {
		return fmt.Errorf("%w: %v", ErrBadExport, err)
	}
	if err := x.line(e); err != nil {
		return err
	}
	x.prev, x.next, x.n = e.Hash, e.Seq+1, x.n+1
	return nil
}

// Close writes the trailer and returns it. An export holds at least one entry.
func (x *AuditExportWriter) Close() (AuditExportTrailer, error) {
	if x.n == 0 {
		return AuditExportTrailer{}, errors.New("audit export: no entries")
	}
	t := AuditExportTrailer{End: true, Entries: x.n, LastSeq: x.next - 1, LastHash: x.prev, SHA256: hex.EncodeToString(x.sum.Sum(nil))}
	b, err := json.Marshal(t)
	if err != nil {
		return t, err
	}
	_, err = x.w.Write(append(b, '\n'))
	return t, err
}

// ReadAuditExport reads and checks an export: the format, every entry's hash, the chain from the
// header's prev hash with consecutive seqs, and the trailer (count, last seq and hash, SHA-256 of
// the bytes before it). fn, when not nil, sees each entry. Any damage is ErrBadExport naming it.
func ReadAuditExport(r io.Reader, fn func(AuditEntry) error) (AuditExportHeader, AuditExportTrailer, error) {
	var hdr AuditExportHeader
	var tr AuditExportTrailer
	br := bufio.NewReaderSize(r, 64<<10)
	sum := sha256.New()
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrBadExport, fmt.Sprintf(format, args...))
	}
	readLine := func() ([]byte, error) {
		b, err := br.ReadBytes('\n')
		if err == io.EOF && len(b) == 0 {
			return nil, io.EOF
		}
		if err != nil && err != io.EOF {
			return nil, err
		}
		if len(b) == 0 || b[len(b)-1] != '\n' {
			return nil, bad("the file is cut short (no trailer)")
		}
		return b, nil
	}
	first, err := readLine()
	if err == io.EOF {
		return hdr, tr, bad("empty file")
	}
	if err != nil {
		return hdr, tr, err
	}
	if json.Unmarshal(first, &hdr) != nil || hdr.Format != AuditExportFormat {
		return hdr, tr, bad("not an audit export (first line is not a %s header)", AuditExportFormat)
	}
	sum.Write(first)
	prev, next, n := hdr.PrevHash, hdr.FirstSeq, 0
	for {
		b, err := readLine()
		if err == io.EOF {
			return hdr, tr, bad("the file is cut short after entry %d (no trailer)", next-1)
		}
		if err != nil {
			return hdr, tr, err
		}
		if bytes.HasPrefix(b, []byte(`{"end":`)) {
			if json.Unmarshal(b, &tr) != nil || !tr.End {
				return hdr, tr, bad("unreadable trailer")
			}
			break
		}
		var e AuditEntry
		if err := json.Unmarshal(b, &e); err != nil {
			return hdr, tr, bad("line %d: %v", n+2, err)
		}
		if e.Seq != next {
			return hdr, tr, bad("entry %d where %d belongs", e.Seq, next)
		}
		if _, err := VerifyChain(prev, []AuditEntry{e}); err != nil {
			return hdr, tr, bad("%v", err)
		}
		if fn != nil {
			if err := fn(e); err != nil {
				return hdr, tr, err
			}
		}
		sum.Write(b)
		prev, next, n = e.Hash, e.Seq+1, n+1
	}
	switch {
	case tr.Entries != n:
		return hdr, tr, bad("trailer counts %d entries, the file holds %d", tr.Entries, n)
	case tr.LastSeq != next-1 || tr.LastHash != prev:
		return hdr, tr, bad("trailer names entry %d hash %s, the last entry is %d hash %s", tr.LastSeq, tr.LastHash, next-1, prev)
	case tr.SHA256 != hex.EncodeToString(sum.Sum(nil)):
		return hdr, tr, bad("SHA-256 mismatch: the file was changed after it was written")
	}
	if _, err := br.ReadByte(); err != io.EOF {
		return hdr, tr, bad("data after the trailer")
	}
	return hdr, tr, nil
}
