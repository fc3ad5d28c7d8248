package modelstore

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/driftline/driftline/shared/artifact"
)

// Marker is the content of a version directory's .verified file, written only after the model
// file was hashed and synced: its presence and agreement with the file is what "verified" means.
type Marker struct {
	// Name and Version repeat the directory's place, so a moved directory is not mistaken.
	Name    string `json:"name"`
	Version int    `json:"version"`
	// ManifestDigest names the signed manifest the file was assembled from.
	ManifestDigest string `json:"manifest_digest"`
	// FileDigest is the whole file's "sha256:HEX"; Size its length in bytes.
	FileDigest string `json:"file_digest"`
	Size       int64  `json:"size"`
}

// maxMarker bounds the marker file read.
const maxMarker = 4 << 10

func (m Marker) validate() error {
	if err := ValidName(m.Name); err != nil {
		return fmt.Errorf("%w: %v", ErrBadMarker, err)
	}
	if m.Version < 1 {
		return fmt.Errorf("%w: version %d", ErrBadMarker, m.Version)
	}
	if !artifact.ValidDigest(m.ManifestDigest) || !artifact.ValidDigest(m.FileDigest) {
		return fmt.Errorf("%w: malformed digest", ErrBadMarker)
	}
	if m.Size < 0 {
		return fmt.Errorf("%w: size %d", ErrBadMarker, m.Size)
	}
	return nil
}

// parseMarker decodes and validates marker bytes; it never panics.
func parseMarker(b []byte) (Marker, error) {
	if len(b) > maxMarker {
		return Marker{}, fmt.Errorf("%w: %d bytes", ErrBadMarker, len(b))
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var m Marker
	if err := dec.Decode(&m); err != nil {
		return Marker{}, fmt.Errorf("%w: %v", ErrBadMarker, err)
	}
	if dec.More() {
		return Marker{}, fmt.Errorf("%w: trailing data", ErrBadMarker)
	}
	return m, m.validate()
}

// verifyDir checks that dir holds a marker for name@v and a model file of the marked size; deep
// also re-hashes the file against the marked digest.
func verifyDir(dir, name string, v int, deep bool) (Marker, error) {
	b, err := os.ReadFile(filepath.Join(dir, MarkerFile))
	if err != nil {
		if os.IsNotExist(err) {
			return Marker{}, fmt.Errorf("%w: %s@%d has no marker", ErrNotStaged, name, v)
		}
		return Marker{}, fmt.Errorf("read marker of %s@%d: %w", name, v, err)
	}
	m, err := parseMarker(b)
	if err != nil {
		return Marker{}, fmt.Errorf("%s@%d: %w", name, v, err)
	}
	if m.Name != name || m.Version != v {
		return Marker{}, fmt.Errorf("%w: %s@%d holds the marker of %s@%d", ErrBadMarker, name, v, m.Name, m.Version)
	}
	f, err := os.Open(filepath.Join(dir, ModelFile))
	if err != nil {
		return Marker{}, fmt.Errorf("%w: %s@%d: %v", ErrBadMarker, name, v, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return Marker{}, fmt.Errorf("stat model %s@%d: %w", name, v, err)
	}
	if !st.Mode().IsRegular() || st.Size() != m.Size {
		return Marker{}, fmt.Errorf("%w: %s@%d: file is %d bytes (%v), marker says %d", ErrBadMarker, name, v, st.Size(), st.Mode(), m.Size)
	}
	if !deep {
		return m, nil
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return Marker{}, fmt.Errorf("hash model %s@%d: %w", name, v, err)
	}
	var sum [sha256.Size]byte
	if got := artifact.FormatDigest([sha256.Size]byte(h.Sum(sum[:0]))); got != m.FileDigest {
		return Marker{}, fmt.Errorf("%w: %s@%d: file hashes to %s, marker says %s", ErrBadMarker, name, v, got, m.FileDigest)
	}
	return m, nil
}
