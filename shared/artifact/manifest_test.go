package artifact

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
)

var (
	dA = DigestOf([]byte("a"))
	dB = DigestOf([]byte("b"))
	dF = DigestOf([]byte("file"))
)

// manifestCases is the one table of manifest encodings: raw bytes, the manifest they decode to,
// and the error expected. Decode tests read every row; encode tests the rows with no error.
var manifestCases = []struct {
	name string
	raw  string
	m    Manifest
	err  error
}{
	{
		name: "two chunks",
		raw:  `{"digest":"` + dF + `","size":30,"chunk_algo":"fastcdc-64k","chunks":[{"digest":"` + dA + `","size":10},{"digest":"` + dB + `","size":20}]}`,
		m:    Manifest{Digest: dF, Size: 30, ChunkAlgo: ChunkAlgo, Chunks: []ChunkRef{{dA, 10}, {dB, 20}}},
	},
	{
		name: "repeated chunk",
		raw:  `{"digest":"` + dF + `","size":20,"chunk_algo":"fastcdc-64k","chunks":[{"digest":"` + dA + `","size":10},{"digest":"` + dA + `","size":10}]}`,
		m:    Manifest{Digest: dF, Size: 20, ChunkAlgo: ChunkAlgo, Chunks: []ChunkRef{{dA, 10}, {dA, 10}}},
	},
	{
		name: "empty file",
		raw:  `{"digest":"` + DigestOf(nil) + `","size":0,"chunk_algo":"fastcdc-64k","chunks":[]}`,
		m:    Manifest{Digest: DigestOf(nil), ChunkAlgo: ChunkAlgo, Chunks: []ChunkRef{}},
	},
	{
		name: "not canonical: spaces",
		raw:  `{"digest": "` + dF + `","size":0,"chunk_algo":"fastcdc-64k","chunks":[]}`,
		err:  ErrNotCanonical,
	},
	{
		name: "not canonical: field order",
		raw:  `{"size":0,"digest":"` + dF + `","chunk_algo":"fastcdc-64k","chunks":[]}`,
		err:  ErrNotCanonical,
	},
	{
		name: "null chunks",
		raw:  `{"digest":"` + dF + `","size":0,"chunk_algo":"fastcdc-64k","chunks":null}`,
		err:  ErrNotCanonical,
	},
	{name: "unknown field", raw: `{"digest":"` + dF + `","size":0,"chunk_algo":"fastcdc-64k","chunks":[],"x":1}`, err: ErrBadManifest},
	{name: "trailing data", raw: `{"digest":"` + dF + `","size":0,"chunk_algo":"fastcdc-64k","chunks":[]} {}`, err: ErrBadManifest},
	{name: "not json", raw: `manifest`, err: ErrBadManifest},
	{name: "empty input", raw: ``, err: ErrBadManifest},
	{name: "wrong algo", raw: `{"digest":"` + dF + `","size":0,"chunk_algo":"rabin","chunks":[]}`, err: ErrBadManifest},
	{name: "bad file digest", raw: `{"digest":"sha256:00","size":0,"chunk_algo":"fastcdc-64k","chunks":[]}`, err: ErrBadManifest},
	{name: "upper-case digest", raw: `{"digest":"` + strings.ToUpper(dF) + `","size":0,"chunk_algo":"fastcdc-64k","chunks":[]}`, err: ErrBadManifest},
	{name: "bad chunk digest", raw: `{"digest":"` + dF + `","size":1,"chunk_algo":"fastcdc-64k","chunks":[{"digest":"md5:00","size":1}]}`, err: ErrBadManifest},
	{name: "zero chunk size", raw: `{"digest":"` + dF + `","size":0,"chunk_algo":"fastcdc-64k","chunks":[{"digest":"` + dA + `","size":0}]}`, err: ErrBadManifest},
	{name: "chunk over max", raw: `{"digest":"` + dF + `","size":262145,"chunk_algo":"fastcdc-64k","chunks":[{"digest":"` + dA + `","size":262145}]}`, err: ErrBadManifest},
	{name: "sizes do not add up", raw: `{"digest":"` + dF + `","size":11,"chunk_algo":"fastcdc-64k","chunks":[{"digest":"` + dA + `","size":10}]}`, err: ErrBadManifest},
	{name: "negative size", raw: `{"digest":"` + dF + `","size":-1,"chunk_algo":"fastcdc-64k","chunks":[]}`, err: ErrBadManifest},
	{name: "size overflows", raw: `{"digest":"` + dF + `","size":99999999999999999999,"chunk_algo":"fastcdc-64k","chunks":[]}`, err: ErrBadManifest},
}

func TestDecodeManifest(t *testing.T) {
	for _, tc := range manifestCases {
		t.Run(tc.name, func(t *testing.T) {
			m, err := DecodeManifest([]byte(tc.raw))
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("err %v, want %v", err, tc.err)
				}
				t.Log(err)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(m) != fmt.Sprint(tc.m) {
				t.Fatalf("decoded %+v, want %+v", m, tc.m)
			}
		})
	}
}

func TestEncodeManifest(t *testing.T) {
	for _, tc := range manifestCases {
		if tc.err != nil {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			b, err := tc.m.Canonical()
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tc.raw {
				t.Fatalf("encoded\n%s\nwant\n%s", b, tc.raw)
			}
			d, err := tc.m.ManifestDigest()
			if err != nil || d != DigestOf(b) {
				t.Fatalf("ManifestDigest %q %v, want %q", d, err, DigestOf(b))
			}
		})
	}
}

func TestManifestLimits(t *testing.T) {
	m := Manifest{Digest: dF, ChunkAlgo: ChunkAlgo, Chunks: make([]ChunkRef, MaxChunks+1)}
	for i := range m.Chunks {
		m.Chunks[i] = ChunkRef{dA, 1}
	}
	m.Size = int64(len(m.Chunks))
	if err := m.Validate(); !errors.Is(err, ErrBadManifest) {
		t.Fatalf("%d chunks: err %v, want ErrBadManifest", len(m.Chunks), err)
	}
	m.Chunks, m.Size = m.Chunks[:MaxChunks], MaxChunks
	for i := range m.Chunks {
		m.Chunks[i].Size = MaxChunkSize
	}
	m.Size = MaxChunks * MaxChunkSize
	b, err := m.Canonical()
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > MaxManifestSize {
		t.Fatalf("largest valid manifest is %d bytes, over MaxManifestSize %d", len(b), MaxManifestSize)
	}
	if _, err := DecodeManifest(b); err != nil {
		t.Fatalf("largest valid manifest does not decode: %v", err)
	}
	if _, err := DecodeManifest(make([]byte, MaxManifestSize+1)); !errors.Is(err, ErrBadManifest) {
		t.Fatalf("oversize input: err %v", err)
	}
}

func TestMissing(t *testing.T) {
	m := Manifest{Chunks: []ChunkRef{{dA, 1}, {dB, 1}, {dA, 1}, {dF, 1}}}
	have := map[string]bool{dB: true}
	got := Missing(m, func(d string) bool { return have[d] })
	want := []string{dA, dF}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("Missing = %v, want %v", got, want)
	}
}

func TestOffsets(t *testing.T) {
	m := Manifest{Chunks: []ChunkRef{{dA, 3}, {dB, 1}, {dA, 3}, {dF, 5}}}
	if got := fmt.Sprint(m.Offsets()); got != "[0 3 4 7]" {
		t.Fatalf("Offsets = %s, want [0 3 4 7]", got)
	}
	if got := (Manifest{}).Offsets(); len(got) != 0 {
		t.Fatalf("Offsets of no chunks = %v", got)
	}
}

func FuzzDecodeManifest(f *testing.F) {
	for _, tc := range manifestCases {
		f.Add([]byte(tc.raw))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeManifest(b)
		if err != nil {
			if !errors.Is(err, ErrBadManifest) && !errors.Is(err, ErrNotCanonical) {
				t.Fatalf("error %v wraps no sentinel", err)
			}
			return
		}
		again, err := m.Canonical()
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("accepted bytes do not re-encode to themselves: %v", err)
		}
	})
}
