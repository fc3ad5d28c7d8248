package artifact

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
)

// Chunk is one content-defined piece of a file, handed to Split's callback.
type Chunk struct {
	// Digest is the digest string of the plain bytes.
	Digest string
	// Offset is where the chunk starts in the file.
	Offset int64
	// Data is the chunk's bytes. It is valid only during the callback: Split reuses the buffer.
	Data []byte
}

// splitBufSize is Split's read buffer: one maximal chunk plus as much again of read-ahead, so a
// refill moves at most one chunk's worth of bytes.
const splitBufSize = 2 * MaxChunkSize

// Split cuts r into content-defined chunks (FastCDC, see ChunkAlgo), calls fn with each in
// order, and returns the manifest of the whole input. Memory stays at one fixed buffer
// (2 × MaxChunkSize) plus the manifest, whatever the input size. An error from fn stops the
// split and is returned wrapped; so is a read error. An input with more than MaxChunks chunks is
// refused with ErrBadManifest.
func Split(r io.Reader, fn func(Chunk) error) (Manifest, error) {
	buf := make([]byte, splitBufSize)
	whole := sha256.New()
	m := Manifest{ChunkAlgo: ChunkAlgo, Chunks: []ChunkRef{}}
	start, end := 0, 0
	eof := false
	for {
		if !eof && end-start < MaxChunkSize {
			end = copy(buf, buf[start:end])
			start = 0
			n, err := io.ReadFull(r, buf[end:])
			end += n
			switch {
			case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
				eof = true
			case err != nil:
				return Manifest{}, fmt.Errorf("split: read at offset %d: %w", m.Size+int64(end), err)
			}
		}
		if start == end {
			break
		}
		n := cutPoint(buf[start:end])
		data := buf[start : start+n]
		if len(m.Chunks) == MaxChunks {
			return Manifest{}, fmt.Errorf("split: %w: more than %d chunks", ErrBadManifest, MaxChunks)
		}
		c := Chunk{Digest: DigestOf(data), Offset: m.Size, Data: data}
		whole.Write(data)
		if err := fn(c); err != nil {
			return Manifest{}, fmt.Errorf("split: chunk %d at offset %d: %w", len(m.Chunks), m.Size, err)
		}
		m.Chunks = append(m.Chunks, ChunkRef{Digest: c.Digest, Size: int64(n)})
		m.Size += int64(n)
		start += n
	}
	m.Digest = hashDigest(whole)
	return m, nil
}
