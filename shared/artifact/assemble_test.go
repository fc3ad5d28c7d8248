package artifact

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
)

func TestAssemble(t *testing.T) {
	data := randBytes(20, 2<<20+999)
	m, chunks := splitAll(t, data)
	get := func(d string) ([]byte, error) {
		b, ok := chunks[d]
		if !ok {
			return nil, fmt.Errorf("no chunk %s", d)
		}
		return b, nil
	}
	errMissing := errors.New("missing")
	first := m.Chunks[0].Digest
	lying := m
	lying.Digest = DigestOf([]byte("another file"))
	cases := []struct {
		name string
		m    Manifest
		get  func(string) ([]byte, error)
		want error
	}{
		{"whole file", m, get, nil},
		{"chunk corrupted", m, func(d string) ([]byte, error) {
			b, _ := get(d)
			if d == first {
				b = bytes.Clone(b)
				b[100] ^= 1
			}
			return b, nil
		}, ErrChunkDigest},
		{"chunk truncated", m, func(d string) ([]byte, error) {
			b, _ := get(d)
			if d == first {
				b = b[:len(b)-1]
			}
			return b, nil
		}, ErrChunkSize},
		{"chunk unavailable", m, func(string) ([]byte, error) { return nil, errMissing }, errMissing},
		{"manifest lies about the file", lying, get, ErrFileDigest},
		{"invalid manifest", Manifest{ChunkAlgo: "x"}, get, ErrBadManifest},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			err := Assemble(&out, tc.m, tc.get)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err %v, want %v", err, tc.want)
			}
			if err != nil {
				t.Log(err)
				return
			}
			if !bytes.Equal(out.Bytes(), data) {
				t.Fatal("reassembled file differs from the input")
			}
		})
	}
}
