package store

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"

	"github.com/dgraph-io/badger/v4"
	"github.com/hashicorp/raft"
)

// Snapshot stream: snapMagic, then one record per key under FSMPrefix in key order
// (uvarint len(key), key, uvarint len(value), value), then a uvarint 0 and the CRC-32C
// (Castagnoli, big endian) of every byte before it.
var snapMagic = []byte("DLSNAP1\n")

// Bounds on one snapshot record; badger's own key limit is 65,000 bytes.
const (
	maxSnapKey   = 65000
	maxSnapValue = 1 << 30
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// fsmSnapshot holds a read transaction: the FSM state at the moment raft asked for it.
type fsmSnapshot struct {
	txn *badger.Txn
	log *slog.Logger
}

// Persist streams every key under FSMPrefix into sink. It runs concurrently with later applies,
// which its read transaction does not see.
func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := writeSnapshot(s.txn, sink); err != nil {
		s.log.Error("persist snapshot", "err", err)
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

// Release ends the read transaction.
func (s *fsmSnapshot) Release() { s.txn.Discard() }

func writeSnapshot(txn *badger.Txn, w io.Writer) error {
	crc := crc32.New(castagnoli)
	bw := bufio.NewWriterSize(io.MultiWriter(w, crc), 256<<10)
	if _, err := bw.Write(snapMagic); err != nil {
		return fmt.Errorf("write snapshot: %w", err)
	}
	opts := badger.DefaultIteratorOptions
	opts.Prefix = FSMPrefix
	opts.PrefetchSize = 16
	it := txn.NewIterator(opts)
	defer it.Close()
	var hdr [binary.MaxVarintLen64]byte
	for it.Rewind(); it.Valid(); it.Next() {
		item := it.Item()
		k := item.Key()
		if _, err := bw.Write(hdr[:binary.PutUvarint(hdr[:], uint64(len(k)))]); err != nil {
			return fmt.Errorf("write snapshot: %w", err)
		}
		if _, err := bw.Write(k); err != nil {
			return fmt.Errorf("write snapshot: %w", err)
		}
		err := item.Value(func(v []byte) error {
			if _, err := bw.Write(hdr[:binary.PutUvarint(hdr[:], uint64(len(v)))]); err != nil {
				return err
			}
			_, err := bw.Write(v)
			return err
		})
		if err != nil {
			return fmt.Errorf("write snapshot key %q: %w", k, err)
		}
	}
	if err := bw.WriteByte(0); err != nil {
		return fmt.Errorf("write snapshot: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write snapshot: %w", err)
	}
	var sum [4]byte
	binary.BigEndian.PutUint32(sum[:], crc.Sum32())
	if _, err := w.Write(sum[:]); err != nil {
		return fmt.Errorf("write snapshot checksum: %w", err)
	}
	return nil
}

// snapReader parses a snapshot stream, keeping the running checksum.
type snapReader struct {
	r   *bufio.Reader
	crc hashWriter
}

type hashWriter interface {
	io.Writer
	Sum32() uint32
}

// readSnapshot calls put for every record of the stream in r, then checks the terminator and the
// checksum. It returns ErrCorruptSnapshot (wrapped) for any malformed stream, and put's error as
// it is. Keys outside FSMPrefix are refused: a snapshot never writes elsewhere.
func readSnapshot(r io.Reader, put func(k, v []byte) error) error {
	sr := &snapReader{r: bufio.NewReaderSize(r, 256<<10), crc: crc32.New(castagnoli)}
	magic := make([]byte, len(snapMagic))
	if err := sr.full(magic); err != nil || !bytes.Equal(magic, snapMagic) {
		return fmt.Errorf("%w: bad header", ErrCorruptSnapshot)
	}
	for n := 0; ; n++ {
		klen, err := sr.uvarint()
		if err != nil {
			return fmt.Errorf("%w: record %d: %w", ErrCorruptSnapshot, n, err)
		}
		if klen == 0 {
			break
		}
		if klen > maxSnapKey {
			return fmt.Errorf("%w: record %d: key of %d bytes", ErrCorruptSnapshot, n, klen)
		}
		k := make([]byte, klen)
		if err := sr.full(k); err != nil {
			return fmt.Errorf("%w: record %d key: %w", ErrCorruptSnapshot, n, err)
		}
		if !bytes.HasPrefix(k, FSMPrefix) {
			return fmt.Errorf("%w: record %d: key %q outside %q", ErrCorruptSnapshot, n, k, FSMPrefix)
		}
		vlen, err := sr.uvarint()
		if err != nil {
			return fmt.Errorf("%w: record %d value length: %w", ErrCorruptSnapshot, n, err)
		}
		if vlen > maxSnapValue {
			return fmt.Errorf("%w: record %d: value of %d bytes", ErrCorruptSnapshot, n, vlen)
		}
		v, err := sr.value(vlen)
		if err != nil {
			return fmt.Errorf("%w: record %d value: %w", ErrCorruptSnapshot, n, err)
		}
		if err := put(k, v); err != nil {
			return err
		}
	}
	want := sr.crc.Sum32()
	var sum [4]byte
	if _, err := io.ReadFull(sr.r, sum[:]); err != nil {
		return fmt.Errorf("%w: checksum: %w", ErrCorruptSnapshot, err)
	}
	if got := binary.BigEndian.Uint32(sum[:]); got != want {
		return fmt.Errorf("%w: checksum %08x, computed %08x", ErrCorruptSnapshot, got, want)
	}
	if _, err := sr.r.ReadByte(); !errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: trailing bytes after checksum", ErrCorruptSnapshot)
	}
	return nil
}

func (sr *snapReader) full(b []byte) error {
	if _, err := io.ReadFull(sr.r, b); err != nil {
		return err
	}
	_, _ = sr.crc.Write(b)
	return nil
}

func (sr *snapReader) uvarint() (uint64, error) {
	var v uint64
	for i := 0; i < binary.MaxVarintLen64; i++ {
		c, err := sr.r.ReadByte()
		if err != nil {
			return 0, err
		}
		_, _ = sr.crc.Write([]byte{c})
		if i == binary.MaxVarintLen64-1 && c > 1 {
			return 0, errors.New("uvarint overflows 64 bits")
		}
		v |= uint64(c&0x7f) << (7 * i)
		if c < 0x80 {
			return v, nil
		}
	}
	return 0, errors.New("uvarint overflows 64 bits")
}

// value reads n bytes, growing the buffer as data arrives so a lying length cannot make it
// allocate more than the stream holds (plus one step).
func (sr *snapReader) value(n uint64) ([]byte, error) {
	const step = 1 << 20
	var v []byte
	for uint64(len(v)) < n {
		m := min(n-uint64(len(v)), step)
		chunk := make([]byte, m)
		if err := sr.full(chunk); err != nil {
			return nil, err
		}
		v = append(v, chunk...)
	}
	if v == nil {
		v = []byte{}
	}
	return v, nil
}

// restore replaces every key under FSMPrefix with the snapshot in r. It first reads the whole
// snapshot into a spool file in dir ("" means the system's temporary directory), checking every
// record and the checksum; only a snapshot found whole drops the old keys, and is then loaded from
// the spool with a WriteBatch (which splits itself under badger's transaction limits). A corrupt
// or truncated snapshot leaves the state as it was.
func restore(db *badger.DB, r io.Reader, dir string) error {
	spool, err := os.CreateTemp(dir, "restore-*.snap")
	if err != nil {
		return fmt.Errorf("restore: spool: %w", err)
	}
	defer func() {
		spool.Close()
		os.Remove(spool.Name())
	}()
	bw := bufio.NewWriterSize(spool, 1<<20)
	if err := readSnapshot(io.TeeReader(r, bw), func(k, v []byte) error { return nil }); err != nil {
		return fmt.Errorf("restore: the old state is kept: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("restore: spool: %w", err)
	}
	if _, err := spool.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("restore: spool: %w", err)
	}
	if err := db.DropPrefix(FSMPrefix); err != nil {
		return fmt.Errorf("restore: drop %q: %w", FSMPrefix, err)
	}
	wb := db.NewWriteBatch()
	defer wb.Cancel()
	if err := readSnapshot(bufio.NewReaderSize(spool, 1<<20), func(k, v []byte) error { return wb.Set(k, v) }); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	if err := wb.Flush(); err != nil {
		return fmt.Errorf("restore: flush: %w", err)
	}
	return nil
}
