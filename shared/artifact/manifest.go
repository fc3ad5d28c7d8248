package artifact

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// Manifest limits. A manifest must fit one fetched object on the MQTT path (shared/wire allows
// 16 MiB); at about 100 bytes of JSON per chunk, MaxChunks keeps it near 13 MiB, which covers
// an 8 GiB artifact at the average chunk size.
const (
	// MaxChunks is the largest number of chunks a manifest may list.
	MaxChunks = 1 << 17
	// MaxManifestSize is the largest encoded manifest DecodeManifest reads.
	MaxManifestSize = 16 << 20
)

// ChunkRef names one chunk of a file, in file order.
type ChunkRef struct {
	// Digest is the digest string of the chunk's plain bytes.
	Digest string `json:"digest"`
	// Size is the chunk's plain length in bytes, 1..MaxChunkSize.
	Size int64 `json:"size"`
}

// Manifest describes a file as an ordered list of content-addressed chunks. Its canonical
// encoding (Canonical) is what the hub signs and what ManifestDigest names.
type Manifest struct {
	// Digest is the digest string of the whole file's plain bytes.
	Digest string `json:"digest"`
	// Size is the file's length in bytes: the sum of the chunk sizes.
	Size int64 `json:"size"`
	// ChunkAlgo names the chunker that cut the file (ChunkAlgo for files cut by Split).
	ChunkAlgo string `json:"chunk_algo"`
	// Chunks lists the chunks in file order. A chunk may appear more than once. It is empty,
	// never nil in the encoding, for an empty file.
	Chunks []ChunkRef `json:"chunks"`
}

// Validate checks that m is well formed: known ChunkAlgo, well-formed digests, chunk sizes in
// 1..MaxChunkSize adding up to Size, at most MaxChunks chunks. It does not check content.
func (m Manifest) Validate() error {
	if m.ChunkAlgo != ChunkAlgo {
		return fmt.Errorf("%w: chunk_algo %.40q, want %q", ErrBadManifest, m.ChunkAlgo, ChunkAlgo)
	}
	if !ValidDigest(m.Digest) {
		return fmt.Errorf("%w: file digest %.80q", ErrBadManifest, m.Digest)
	}
	if m.Size < 0 {
		return fmt.Errorf("%w: negative size %d", ErrBadManifest, m.Size)
	}
	if len(m.Chunks) > MaxChunks {
		return fmt.Errorf("%w: %d chunks, at most %d", ErrBadManifest, len(m.Chunks), MaxChunks)
	}
	var sum int64
	for i, c := range m.Chunks {
		if !ValidDigest(c.Digest) {
			return fmt.Errorf("%w: chunk %d: digest %.80q", ErrBadManifest, i, c.Digest)
		}
		if c.Size < 1 || c.Size > MaxChunkSize {
			return fmt.Errorf("%w: chunk %d: size %d outside 1..%d", ErrBadManifest, i, c.Size, MaxChunkSize)
		}
		sum += c.Size
	}
	if sum != m.Size {
		return fmt.Errorf("%w: chunk sizes add up to %d, size says %d", ErrBadManifest, sum, m.Size)
	}
	return nil
}

// Canonical returns the canonical encoding of a valid manifest: compact JSON with the fields in
// declaration order and no trailing newline. Equal manifests have equal bytes.
func (m Manifest) Canonical() ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	if m.Chunks == nil {
		m.Chunks = []ChunkRef{}
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode manifest: %w", err)
	}
	return b, nil
}

// ManifestDigest returns the digest string of m's canonical encoding: the name under which the
// hub stores the manifest and agents fetch it.
func (m Manifest) ManifestDigest() (string, error) {
	b, err := m.Canonical()
	if err != nil {
		return "", err
	}
	return DigestOf(b), nil
}

// DecodeManifest parses manifest bytes from outside (an agent's fetch, an upload). It accepts
// only a valid manifest in canonical form with no unknown fields, so the digest of b names the
// returned manifest; anything else is ErrBadManifest or ErrNotCanonical.
func DecodeManifest(b []byte) (Manifest, error) {
	if len(b) > MaxManifestSize {
		return Manifest{}, fmt.Errorf("%w: %d bytes, at most %d", ErrBadManifest, len(b), MaxManifestSize)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var m Manifest
	if err := dec.Decode(&m); err != nil {
		return Manifest{}, fmt.Errorf("%w: %v", ErrBadManifest, err)
	}
	if dec.More() {
		return Manifest{}, fmt.Errorf("%w: trailing data after the manifest", ErrBadManifest)
	}
	canon, err := m.Canonical()
	if err != nil {
		return Manifest{}, err
	}
	if !bytes.Equal(canon, b) {
		return Manifest{}, ErrNotCanonical
	}
	return m, nil
}

// Offsets returns where each chunk of m starts in the file, in manifest order.
func (m Manifest) Offsets() []int64 {
	out := make([]int64, len(m.Chunks))
	var off int64
	for i, c := range m.Chunks {
		out[i] = off
		off += c.Size
	}
	return out
}

// Missing returns, in manifest order and without repeats, the digests of the chunks of m for
// which have reports false: what a puller still has to fetch.
func Missing(m Manifest, have func(digest string) bool) []string {
	seen := make(map[string]struct{}, len(m.Chunks))
	var out []string
	for _, c := range m.Chunks {
		if _, ok := seen[c.Digest]; ok {
			continue
		}
		seen[c.Digest] = struct{}{}
		if !have(c.Digest) {
			out = append(out, c.Digest)
		}
	}
	return out
}
