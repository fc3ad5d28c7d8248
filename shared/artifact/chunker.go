package artifact

import (
	"crypto/sha256"
	"encoding/binary"
)

// Chunking parameters. They are part of the format: changing any of them, or the gear table,
// changes every chunk boundary, so it needs a new ChunkAlgo name (see DESIGN.md).
const (
	// MinChunkSize is the smallest chunk Split produces, except for the last chunk of a file.
	MinChunkSize = 16 << 10
	// AvgChunkSize is the normal chunk size FastCDC aims at.
	AvgChunkSize = 64 << 10
	// MaxChunkSize is the largest chunk Split produces and the largest a manifest may list.
	MaxChunkSize = 256 << 10
	// ChunkAlgo names this chunker (FastCDC, normalisation level 2, the gear table below) in
	// manifests.
	ChunkAlgo = "fastcdc-64k"
)

// Normalised chunking (FastCDC level 2): before the normal size a cut needs 18 zero bits
// (harder), after it 14 (easier), which narrows the spread of chunk sizes around 64 KiB. The
// masks take the top bits of the gear hash: with a left-shifting hash those depend on the last
// 64 bytes, the widest window the hash has.
const (
	maskS uint64 = (1<<18 - 1) << (64 - 18)
	maskL uint64 = (1<<14 - 1) << (64 - 14)
)

// gear is the gear hash table: entry i is the first 8 bytes (little endian) of
// SHA-256("driftline-gear-v1" || byte(i)). Generated, not pasted, so anyone can re-derive it.
var gear = func() (t [256]uint64) {
	seed := []byte("driftline-gear-v1\x00")
	for i := range t {
		seed[len(seed)-1] = byte(i)
		sum := sha256.Sum256(seed)
		t[i] = binary.LittleEndian.Uint64(sum[:8])
	}
	return t
}()

// cutPoint returns the length of the chunk that starts at data[0]. data holds at least
// MaxChunkSize bytes unless it is the end of the input.
func cutPoint(data []byte) int {
	n := len(data)
	if n <= MinChunkSize {
		return n
	}
	n = min(n, MaxChunkSize)
	normal := min(n, AvgChunkSize)
	var fp uint64
	i := MinChunkSize
	for ; i < normal; i++ {
		fp = fp<<1 + gear[data[i]]
		if fp&maskS == 0 {
			return i + 1
		}
	}
	for ; i < n; i++ {
		fp = fp<<1 + gear[data[i]]
		if fp&maskL == 0 {
			return i + 1
		}
	}
	return n
}
