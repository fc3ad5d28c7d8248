package artifact

import (
	"crypto/sha256"
	"fmt"
	"io"
)

// Assemble writes the file that m describes to w, asking get for each chunk in order. It
// validates m first, checks every chunk's size (ErrChunkSize) and SHA-256 (ErrChunkDigest) before
// writing it, and the whole file's SHA-256 at the end (ErrFileDigest). On any error, what was
// already written to w is not a verified file: write to a temporary place and move it only after
// Assemble returns nil. get's slice is not retained.
func Assemble(w io.Writer, m Manifest, get func(digest string) ([]byte, error)) error {
	if err := m.Validate(); err != nil {
		return err
	}
	whole := sha256.New()
	var off int64
	for i, c := range m.Chunks {
		data, err := get(c.Digest)
		if err != nil {
			return fmt.Errorf("assemble: chunk %d %s: %w", i, c.Digest, err)
		}
		if int64(len(data)) != c.Size {
			return fmt.Errorf("assemble: chunk %d %s: %w: got %d bytes, want %d", i, c.Digest, ErrChunkSize, len(data), c.Size)
		}
		if got := DigestOf(data); got != c.Digest {
			return fmt.Errorf("assemble: chunk %d: %w: got %s, want %s", i, ErrChunkDigest, got, c.Digest)
		}
		whole.Write(data)
		if _, err := w.Write(data); err != nil {
			return fmt.Errorf("assemble: write at offset %d: %w", off, err)
		}
		off += c.Size
	}
	if got := hashDigest(whole); got != m.Digest {
		return fmt.Errorf("assemble: %w: got %s, want %s", ErrFileDigest, got, m.Digest)
	}
	return nil
}
