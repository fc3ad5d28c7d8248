package chunkcache

import (
	"testing"

	"github.com/driftline/driftline/agent/devicedb"
	"github.com/driftline/driftline/shared/artifact"
)

func benchCache(b *testing.B) *Cache {
	b.Helper()
	db, err := devicedb.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = db.Close() })
	c, err := Open(db.Root().Sub("chunks"), Options{MaxBytes: 64 << 20, Logger: quiet()})
	if err != nil {
		b.Fatal(err)
	}
	return c
}

// BenchmarkPut stores distinct 64 KiB chunks (the average chunk size): hash, compress, write,
// and evict once the 64 MiB cap is reached.
func BenchmarkPut(b *testing.B) {
	c := benchCache(b)
	chunks := make([][]byte, 64)
	digests := make([]string, 64)
	for i := range chunks {
		chunks[i], digests[i] = chunk(uint64(i), 64<<10)
	}
	b.SetBytes(64 << 10)
	i := 0
	for b.Loop() {
		// Alternate contents so most Puts are new entries: vary the first bytes per round.
		k := i % len(chunks)
		if i >= len(chunks) {
			b.StopTimer()
			chunks[k][0]++
			digests[k] = artifact.DigestOf(chunks[k])
			b.StartTimer()
		}
		if err := c.Put(digests[k], chunks[k]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkGet reads and verifies a 64 KiB chunk.
func BenchmarkGet(b *testing.B) {
	c := benchCache(b)
	data, d := chunk(1, 64<<10)
	if err := c.Put(d, data); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(64 << 10)
	for b.Loop() {
		if _, err := c.Get(d); err != nil {
			b.Fatal(err)
		}
	}
}
