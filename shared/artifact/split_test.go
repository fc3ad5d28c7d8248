package artifact

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"runtime"
	"testing"
	"testing/iotest"
)

// randBytes returns n deterministic pseudo-random bytes for seed.
func randBytes(seed byte, n int) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{seed})
	_, _ = r.Read(b)
	return b
}

// splitAll returns the manifest of data and the chunks' bytes, checking Split's own invariants.
func splitAll(t *testing.T, data []byte) (Manifest, map[string][]byte) {
	t.Helper()
	chunks := map[string][]byte{}
	var off int64
	m, err := Split(bytes.NewReader(data), func(c Chunk) error {
		if c.Offset != off {
			t.Fatalf("chunk at offset %d, want %d", c.Offset, off)
		}
		if DigestOf(c.Data) != c.Digest {
			t.Fatalf("chunk at %d: digest does not match data", c.Offset)
		}
		off += int64(len(c.Data))
		chunks[c.Digest] = bytes.Clone(c.Data)
		return nil
	})
	if err != nil {
		t.Fatalf("Split: %v", err)
	}
	if err := m.Validate(); err != nil {
		t.Fatalf("Split produced an invalid manifest: %v", err)
	}
	if m.Size != int64(len(data)) || m.Digest != DigestOf(data) {
		t.Fatalf("manifest size %d digest %s, want %d %s", m.Size, m.Digest, len(data), DigestOf(data))
	}
	return m, chunks
}

// sharedBytes returns how many bytes of b's chunks are also chunks of a.
func sharedBytes(a, b Manifest) int64 {
	inA := map[string]bool{}
	for _, c := range a.Chunks {
		inA[c.Digest] = true
	}
	var n int64
	for _, c := range b.Chunks {
		if inA[c.Digest] {
			n += c.Size
		}
	}
	return n
}

func TestSplitBounds(t *testing.T) {
	cases := []struct {
		name string
		size int
	}{
		{"empty", 0},
		{"one byte", 1},
		{"below min", MinChunkSize - 1},
		{"exactly min", MinChunkSize},
		{"exactly max", MaxChunkSize},
		{"max plus one", MaxChunkSize + 1},
		{"several MiB", 5<<20 + 12345},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			data := randBytes(1, tc.size)
			m, _ := splitAll(t, data)
			for i, c := range m.Chunks {
				last := i == len(m.Chunks)-1
				if c.Size > MaxChunkSize || (!last && c.Size < MinChunkSize) {
					t.Errorf("chunk %d of %d has size %d", i, len(m.Chunks), c.Size)
				}
			}
			if tc.size == 0 && len(m.Chunks) != 0 {
				t.Errorf("empty input gave %d chunks", len(m.Chunks))
			}
		})
	}
}

func TestSplitAverageSize(t *testing.T) {
	m, _ := splitAll(t, randBytes(2, 16<<20))
	avg := m.Size / int64(len(m.Chunks))
	t.Logf("%d chunks, average %d bytes", len(m.Chunks), avg)
	if avg < AvgChunkSize/2 || avg > AvgChunkSize*2 {
		t.Errorf("average chunk size %d, want about %d", avg, AvgChunkSize)
	}
}

// TestSplitGolden pins the chunk boundaries: they are part of the stored format (ChunkAlgo).
// If this fails, the chunker changed and needs a new ChunkAlgo name.
func TestSplitGolden(t *testing.T) {
	m, _ := splitAll(t, randBytes(3, 1<<20))
	var sizes []int64
	for _, c := range m.Chunks {
		sizes = append(sizes, c.Size)
	}
	want := goldenSizes
	if len(sizes) != len(want) {
		t.Fatalf("chunk sizes %v, want %v", sizes, want)
	}
	for i := range want {
		if sizes[i] != want[i] {
			t.Fatalf("chunk sizes %v, want %v", sizes, want)
		}
	}
	if gear[0] != goldenGear0 || gear[255] != goldenGear255 {
		t.Fatalf("gear table changed: %#x %#x", gear[0], gear[255])
	}
}

func TestSplitSharesContent(t *testing.T) {
	base := randBytes(4, 8<<20)
	edit := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(base)) }
	cases := []struct {
		name      string
		changed   []byte
		minShared float64 // share of the changed file's bytes found in base's chunks
	}{
		{"insert at start", edit(func(b []byte) []byte { return append(randBytes(5, 100), b...) }), 0.97},
		{"delete at start", edit(func(b []byte) []byte { return b[777:] }), 0.97},
		{"5% rewritten in two places", edit(func(b []byte) []byte {
			n := len(b) / 40
			copy(b[1<<20:], randBytes(6, n))
			copy(b[5<<20:], randBytes(7, n))
			return b
		}), 0.90},
		{"5% inserted in the middle", edit(func(b []byte) []byte {
			mid := len(b) / 2
			return append(append(b[:mid:mid], randBytes(8, len(b)/20)...), b[mid:]...)
		}), 0.90},
	}
	mBase, _ := splitAll(t, base)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, _ := splitAll(t, tc.changed)
			share := float64(sharedBytes(mBase, m)) / float64(m.Size)
			t.Logf("%.1f%% of the bytes in shared chunks", 100*share)
			if share < tc.minShared {
				t.Errorf("shared %.3f of the bytes, want at least %.2f", share, tc.minShared)
			}
		})
	}
}

func TestSplitReaderShapes(t *testing.T) {
	data := randBytes(9, 3<<20)
	want, _ := splitAll(t, data)
	readers := map[string]io.Reader{
		"one byte at a time": iotest.OneByteReader(bytes.NewReader(data)),
		"half reads":         iotest.HalfReader(bytes.NewReader(data)),
		"data with EOF":      iotest.DataErrReader(bytes.NewReader(data)),
	}
	for name, r := range readers {
		t.Run(name, func(t *testing.T) {
			got, err := Split(r, func(Chunk) error { return nil })
			if err != nil {
				t.Fatal(err)
			}
			a, _ := got.Canonical()
			b, _ := want.Canonical()
			if !bytes.Equal(a, b) {
				t.Error("manifest depends on how the reader returns its bytes")
			}
		})
	}
}

func TestSplitErrors(t *testing.T) {
	errStop := errors.New("stop")
	errRead := errors.New("disk on fire")
	cases := []struct {
		name string
		r    io.Reader
		fn   func(Chunk) error
		want error
	}{
		{"callback error", bytes.NewReader(randBytes(1, 1<<20)), func(Chunk) error { return errStop }, errStop},
		{"read error", io.MultiReader(bytes.NewReader(randBytes(1, 1<<20)), iotest.ErrReader(errRead)), func(Chunk) error { return nil }, errRead},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Split(tc.r, tc.fn)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err %v, want %v", err, tc.want)
			}
			t.Log(err)
		})
	}
}

// TestSplitMemoryBounded checks that Split's allocations do not grow with the input: a 32 MiB
// stream costs the fixed buffer plus the manifest, far below the input size.
func TestSplitMemoryBounded(t *testing.T) {
	const size = 32 << 20
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	m, err := Split(io.LimitReader(rand.NewChaCha8([32]byte{10}), size), func(Chunk) error { return nil })
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("%d chunks, %d bytes allocated for %d bytes of input", len(m.Chunks), alloc, size)
	if alloc > 4<<20 {
		t.Errorf("Split allocated %d bytes for a %d-byte stream", alloc, size)
	}
}

func BenchmarkSplit(b *testing.B) {
	data := randBytes(11, 64<<20)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := Split(bytes.NewReader(data), func(Chunk) error { return nil }); err != nil {
			b.Fatal(err)
		}
	}
}
