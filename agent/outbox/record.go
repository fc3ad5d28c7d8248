package outbox

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/driftline/driftline/shared/zstdx"
)

// Stored form of one report (the badger value; the key is the 8-byte big-endian sequence number):
//
//	byte 0      format version (recordVersion)
//	bytes 1-8   enqueue time, Unix milliseconds, big endian
//	byte 9      flags: bits 0-1 QoS, bit 2 retain
//	bytes 10-17 report number for the hub's acknowledgement (0: not numbered), big endian
//	bytes 18-19 topic length, big endian
//	topic
//	the payload as one zstd frame
//
// Version 1 (written before reports were numbered) lacks bytes 10-17; it is still read, as a
// report that is not numbered.
const (
	recordVersion = 2
	headerLen     = 20
	headerLenV1   = 12
	flagRetain    = 1 << 2
	maxTopic      = 1<<16 - 1
)

// record is one queued report, decoded.
type record struct {
	seq     uint64
	at      time.Time
	topic   string
	payload []byte
	qos     byte
	retain  bool
	// num numbers the report for the hub's acknowledgement (wire.ReportSeq); 0 when it is not
	// numbered (deleted once the broker acknowledged it).
	num uint64
	// rewinds is Outbox.rewinds when next returned the record.
	rewinds uint64
}

// encodeRecord returns the stored form of r (r.seq is not part of it).
func encodeRecord(r record) []byte {
	b := make([]byte, headerLen, headerLen+len(r.topic)+len(r.payload)/2+16)
	b[0] = recordVersion
	binary.BigEndian.PutUint64(b[1:9], uint64(r.at.UnixMilli()))
	b[9] = r.qos & 3
	if r.retain {
		b[9] |= flagRetain
	}
	binary.BigEndian.PutUint64(b[10:18], r.num)
	binary.BigEndian.PutUint16(b[18:20], uint16(len(r.topic)))
	b = append(b, r.topic...)
	return zstdx.Encode(b, r.payload)
}

// decodeHeader parses everything but the payload and returns the offset of the zstd frame.
func decodeHeader(b []byte) (record, int, error) {
	hl := headerLen
	if len(b) > 0 && b[0] == 1 {
		hl = headerLenV1
	}
	if len(b) < hl {
		return record{}, 0, fmt.Errorf("%w: %d bytes, header needs %d", ErrCorrupt, len(b), hl)
	}
	if b[0] != recordVersion && b[0] != 1 {
		return record{}, 0, fmt.Errorf("%w: format version %d", ErrCorrupt, b[0])
	}
	if b[9]&^(3|flagRetain) != 0 || b[9]&3 == 3 {
		return record{}, 0, fmt.Errorf("%w: flags %#x", ErrCorrupt, b[9])
	}
	var num uint64
	if hl == headerLen {
		num = binary.BigEndian.Uint64(b[10:18])
	}
	n := int(binary.BigEndian.Uint16(b[hl-2 : hl]))
	if len(b) < hl+n {
		return record{}, 0, fmt.Errorf("%w: topic of %d bytes truncated", ErrCorrupt, n)
	}
	r := record{
		at:     time.UnixMilli(int64(binary.BigEndian.Uint64(b[1:9]))),
		qos:    b[9] & 3,
		retain: b[9]&flagRetain != 0,
		num:    num,
		topic:  string(b[hl : hl+n]),
	}
	return r, hl + n, nil
}

// decodeRecord parses a stored record, payload included. Any damage returns an error wrapping
// ErrCorrupt; it never panics.
func decodeRecord(b []byte) (record, error) {
	r, off, err := decodeHeader(b)
	if err != nil {
		return record{}, err
	}
	p, err := zstdx.Decode(nil, b[off:], MaxPayload)
	if err != nil {
		return record{}, fmt.Errorf("%w: payload: %v", ErrCorrupt, err)
	}
	if p == nil {
		p = []byte{}
	}
	r.payload = p
	return r, nil
}
