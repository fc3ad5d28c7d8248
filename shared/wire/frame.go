package wire

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"

	"github.com/driftline/driftline/shared/artifact"
	"github.com/driftline/driftline/shared/zstdx"
)

// Chunk frame layout (all integers big endian), one frame per MQTT message on
// PREFIX/dev/{id}/chunk:
//
//	offset  size  field
//	0       4     magic "DLCF"
//	4       1     version (FrameVersion)
//	5       1     kind (FrameData, FrameNotFound)
//	6       1     request id length n (1..MaxRequestIDLen)
//	7       n     request id (ValidateRequestID)
//	7+n     32    digest: raw SHA-256 of the whole object's plain bytes
//	39+n    4     total: plain size of the whole object
//	43+n    4     offset: where this part's plain bytes start in the object
//	47+n    4     plain: this part's plain length
//	51+n    4     zlen: length of the zstd bytes that follow
//	55+n    zlen  zstd frame of this part's plain bytes
//
// An object (a chunk, a manifest, a contract, a profile) travels as one part when it is at most
// MaxPartSize bytes, as several otherwise; parts are cut at multiples of MaxPartSize, so every
// part but the last is full. A not-found frame has total, offset, plain and zlen all 0.
const (
	// FrameMagic starts every frame.
	FrameMagic = "DLCF"
	// FrameVersion is the layout version this package writes and reads.
	FrameVersion = 1
	// MaxFrameSize bounds a whole frame: under 1 MiB with room for the MQTT header and topic,
	// so EMQX's default 1 MB packet limit holds.
	MaxFrameSize = 1<<20 - 4096
	// MaxPartSize is the most plain bytes one frame carries: one maximal chunk.
	MaxPartSize = artifact.MaxChunkSize
	// MaxObjectSize is the largest object fetchable over MQTT: the largest manifest.
	MaxObjectSize = artifact.MaxManifestSize

	frameFixed = 4 + 1 + 1 + 1 + 32 + 4 + 4 + 4 + 4
)

// FrameKind says what a frame answers.
type FrameKind uint8

// Frame kinds.
const (
	// FrameData carries (part of) the object's bytes.
	FrameData FrameKind = 0
	// FrameNotFound says the hub holds no object with the digest: the agent fails fast.
	FrameNotFound FrameKind = 1
)

// Frame is one decoded chunk frame. Payload aliases the bytes DecodeFrame was given.
type Frame struct {
	Kind      FrameKind
	RequestID string
	// Digest is the raw SHA-256 of the whole object's plain bytes.
	Digest [sha256.Size]byte
	// Total is the object's plain size; Offset and Plain place this part in it.
	Total, Offset, Plain uint32
	// Payload is the zstd frame of this part's plain bytes.
	Payload []byte
}

// DigestString returns the frame's digest in "sha256:HEX" form.
func (f Frame) DigestString() string { return artifact.FormatDigest(f.Digest) }

// validate checks everything about f that does not need decompression.
func (f Frame) validate() error {
	if err := ValidateRequestID(f.RequestID); err != nil {
		return fmt.Errorf("%w: %v", ErrBadFrame, err)
	}
	switch f.Kind {
	case FrameNotFound:
		if f.Total != 0 || f.Offset != 0 || f.Plain != 0 || len(f.Payload) != 0 {
			return fmt.Errorf("%w: not-found frame with lengths or payload", ErrBadFrame)
		}
		return nil
	case FrameData:
	default:
		return fmt.Errorf("%w: unknown kind %d", ErrBadFrame, f.Kind)
	}
	switch {
	case f.Total > MaxObjectSize:
		return fmt.Errorf("%w: object of %d bytes, at most %d", ErrBadFrame, f.Total, MaxObjectSize)
	case f.Plain > MaxPartSize:
		return fmt.Errorf("%w: part of %d bytes, at most %d", ErrBadFrame, f.Plain, MaxPartSize)
	case f.Offset%MaxPartSize != 0:
		return fmt.Errorf("%w: part offset %d not a multiple of %d", ErrBadFrame, f.Offset, MaxPartSize)
	case uint64(f.Offset)+uint64(f.Plain) > uint64(f.Total):
		return fmt.Errorf("%w: part %d+%d beyond object size %d", ErrBadFrame, f.Offset, f.Plain, f.Total)
	case f.Plain == 0 && f.Total != 0:
		return fmt.Errorf("%w: empty part of a non-empty object", ErrBadFrame)
	case f.Plain != MaxPartSize && f.Offset+f.Plain != f.Total:
		return fmt.Errorf("%w: short part %d+%d not at the end of %d", ErrBadFrame, f.Offset, f.Plain, f.Total)
	case len(f.Payload) == 0:
		return fmt.Errorf("%w: data frame without payload", ErrBadFrame)
	case frameFixed+len(f.RequestID)+len(f.Payload) > MaxFrameSize:
		return fmt.Errorf("%w: frame of %d bytes, at most %d", ErrBadFrame, frameFixed+len(f.RequestID)+len(f.Payload), MaxFrameSize)
	}
	return nil
}

// EncodeFrame validates f and returns its wire bytes (at most MaxFrameSize).
func EncodeFrame(f Frame) ([]byte, error) {
	return AppendFrame(make([]byte, 0, frameFixed+len(f.RequestID)+len(f.Payload)), f)
}

// AppendFrame validates f and appends its wire bytes to dst (a sender that may reuse its
// buffer once the transport has copied the frame avoids an allocation per frame).
func AppendFrame(dst []byte, f Frame) ([]byte, error) {
	if err := f.validate(); err != nil {
		return dst, err
	}
	b := append(dst, FrameMagic...)
	b = append(b, FrameVersion, byte(f.Kind), byte(len(f.RequestID)))
	b = append(b, f.RequestID...)
	b = append(b, f.Digest[:]...)
	b = binary.BigEndian.AppendUint32(b, f.Total)
	b = binary.BigEndian.AppendUint32(b, f.Offset)
	b = binary.BigEndian.AppendUint32(b, f.Plain)
	b = binary.BigEndian.AppendUint32(b, uint32(len(f.Payload)))
	return append(b, f.Payload...), nil
}

// DecodeFrame parses one frame. It rejects, with ErrBadFrame, a frame over MaxFrameSize, a
// wrong magic or version, an unknown kind, inconsistent or oversize lengths, and a payload that
// is shorter or longer than its declared length. The returned Payload aliases b.
func DecodeFrame(b []byte) (Frame, error) {
	if len(b) > MaxFrameSize {
		return Frame{}, fmt.Errorf("%w: %d bytes, at most %d", ErrBadFrame, len(b), MaxFrameSize)
	}
	if len(b) < frameFixed {
		return Frame{}, fmt.Errorf("%w: %d bytes, shorter than a header", ErrBadFrame, len(b))
	}
	if string(b[:4]) != FrameMagic {
		return Frame{}, fmt.Errorf("%w: bad magic %q", ErrBadFrame, b[:4])
	}
	if b[4] != FrameVersion {
		return Frame{}, fmt.Errorf("%w: version %d, want %d", ErrBadFrame, b[4], FrameVersion)
	}
	f := Frame{Kind: FrameKind(b[5])}
	n := int(b[6])
	if len(b) < frameFixed+n {
		return Frame{}, fmt.Errorf("%w: truncated header", ErrBadFrame)
	}
	p := 7
	f.RequestID = string(b[p : p+n])
	p += n
	copy(f.Digest[:], b[p:p+32])
	p += 32
	f.Total = binary.BigEndian.Uint32(b[p:])
	f.Offset = binary.BigEndian.Uint32(b[p+4:])
	f.Plain = binary.BigEndian.Uint32(b[p+8:])
	zlen := binary.BigEndian.Uint32(b[p+12:])
	p += 16
	if uint64(zlen) != uint64(len(b)-p) {
		return Frame{}, fmt.Errorf("%w: payload length %d, %d bytes follow the header", ErrBadFrame, zlen, len(b)-p)
	}
	if zlen > 0 {
		f.Payload = b[p:]
	}
	if err := f.validate(); err != nil {
		return Frame{}, err
	}
	return f, nil
}

// Decompress returns this part's plain bytes, refusing to produce more than Plain bytes
// (decompression bombs) and any count other than Plain (ErrBadFrame). It does not check the
// digest: see Open and Object. A not-found frame yields ErrNotFound.
func (f Frame) Decompress() ([]byte, error) { return f.DecompressTo(nil) }

// DecompressTo is Decompress into dst's storage (dst[:0] is appended to, so a buffer with room
// for the plain bytes is reused instead of allocating).
func (f Frame) DecompressTo(dst []byte) ([]byte, error) {
	if f.Kind == FrameNotFound {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, f.DigestString())
	}
	out, err := zstdx.Decode(dst[:0], f.Payload, max(int(f.Plain), 1))
	if err != nil {
		return nil, fmt.Errorf("%w: %s part at %d: %v", ErrBadFrame, f.DigestString(), f.Offset, err)
	}
	if len(out) != int(f.Plain) {
		return nil, fmt.Errorf("%w: %s part at %d: %d plain bytes, header says %d", ErrBadFrame, f.DigestString(), f.Offset, len(out), f.Plain)
	}
	return out, nil
}

// Open returns the plain bytes of a single-part object (every chunk is one) after checking
// that they hash to the frame's digest (ErrFrameDigest). A part of a larger object is
// ErrBadFrame here: collect those with an Object. A not-found frame yields ErrNotFound.
func (f Frame) Open() ([]byte, error) { return f.OpenTo(nil) }

// OpenTo is Open into dst's storage, as DecompressTo.
func (f Frame) OpenTo(dst []byte) ([]byte, error) {
	if f.Kind == FrameData && (f.Offset != 0 || f.Plain != f.Total) {
		return nil, fmt.Errorf("%w: %s is a part (%d+%d of %d), not a whole object", ErrBadFrame, f.DigestString(), f.Offset, f.Plain, f.Total)
	}
	plain, err := f.DecompressTo(dst)
	if err != nil {
		return nil, err
	}
	if sha256.Sum256(plain) != f.Digest {
		return nil, fmt.Errorf("%w: %s", ErrFrameDigest, f.DigestString())
	}
	return plain, nil
}

// DataFrames compresses data and returns the encoded frames that carry it as the answer to
// requestID: one frame when len(data) <= MaxPartSize, else one per MaxPartSize part. The digest
// in every frame is SHA-256(data).
func DataFrames(requestID string, data []byte) ([][]byte, error) {
	parts, err := DataParts(data)
	if err != nil {
		return nil, err
	}
	return EncodeParts(requestID, parts)
}

// EncodeParts encodes parts (DataParts) as the frames answering requestID.
func EncodeParts(requestID string, parts []Frame) ([][]byte, error) {
	frames := make([][]byte, 0, len(parts))
	for _, f := range parts {
		f.RequestID = requestID
		b, err := EncodeFrame(f)
		if err != nil {
			return nil, err
		}
		frames = append(frames, b)
	}
	return frames, nil
}

// DataParts returns the data frames of DataFrames before encoding and without a request id:
// the digest and compression are the costly part, the same for every request of one object,
// so a server may keep the parts of an object it sends often and encode them per request
// (EncodeParts). The parts share no memory with data.
func DataParts(data []byte) ([]Frame, error) {
	if len(data) > MaxObjectSize {
		return nil, fmt.Errorf("%w: object of %d bytes, at most %d", ErrBadFrame, len(data), MaxObjectSize)
	}
	digest := sha256.Sum256(data)
	var parts []Frame
	for off := 0; off == 0 || off < len(data); off += MaxPartSize {
		part := data[off:min(off+MaxPartSize, len(data))]
		parts = append(parts, Frame{
			Kind: FrameData, Digest: digest,
			Total: uint32(len(data)), Offset: uint32(off), Plain: uint32(len(part)),
			Payload: zstdx.Encode(nil, part),
		})
	}
	return parts, nil
}

// NotFoundFrame returns the encoded frame that tells requestID's sender the hub has no object
// with digest.
func NotFoundFrame(requestID string, digest [sha256.Size]byte) ([]byte, error) {
	return EncodeFrame(Frame{Kind: FrameNotFound, RequestID: requestID, Digest: digest})
}
