package wire

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/driftline/driftline/shared/zstdx"
)

// rawFrame builds frame bytes field by field, independently of EncodeFrame, so the table
// states the layout rather than echoing the encoder.
func rawFrame(magic string, version, kind byte, reqID string, digest [32]byte, total, offset, plain, zlen uint32, payload []byte) []byte {
	b := []byte(magic)
	b = append(b, version, kind, byte(len(reqID)))
	b = append(b, reqID...)
	b = append(b, digest[:]...)
	for _, v := range []uint32{total, offset, plain, zlen} {
		b = binary.BigEndian.AppendUint32(b, v)
	}
	return append(b, payload...)
}

var (
	chunkPlain = bytes.Repeat([]byte("driftline "), 100)
	chunkSum   = sha256.Sum256(chunkPlain)
	chunkZ     = zstdx.Encode(nil, chunkPlain)
	emptyZ     = zstdx.Encode(nil, nil)
	bigSum     = sha256.Sum256([]byte("big object"))
	n          = uint32(len(chunkPlain))
	zn         = uint32(len(chunkZ))
)

// frameCases is the one table of chunk frames: raw bytes, decoded frame, expected error.
// Decode tests read every row; encode tests the rows without an error.
var frameCases = []struct {
	name string
	raw  []byte
	want Frame
	err  error
}{
	{"whole chunk", rawFrame("DLCF", 1, 0, "req-1", chunkSum, n, 0, n, zn, chunkZ),
		Frame{Kind: FrameData, RequestID: "req-1", Digest: chunkSum, Total: n, Plain: n, Payload: chunkZ}, nil},
	{"not found", rawFrame("DLCF", 1, 1, "req-1", chunkSum, 0, 0, 0, 0, nil),
		Frame{Kind: FrameNotFound, RequestID: "req-1", Digest: chunkSum}, nil},
	{"empty object", rawFrame("DLCF", 1, 0, "r", sha256.Sum256(nil), 0, 0, 0, uint32(len(emptyZ)), emptyZ),
		Frame{Kind: FrameData, RequestID: "r", Digest: sha256.Sum256(nil), Payload: emptyZ}, nil},
	{"first part of a big object", rawFrame("DLCF", 1, 0, "r", bigSum, 3*MaxPartSize, 0, MaxPartSize, zn, chunkZ),
		Frame{Kind: FrameData, RequestID: "r", Digest: bigSum, Total: 3 * MaxPartSize, Plain: MaxPartSize, Payload: chunkZ}, nil},
	{"last part of a big object", rawFrame("DLCF", 1, 0, "r", bigSum, 2*MaxPartSize+5, 2*MaxPartSize, 5, zn, chunkZ),
		Frame{Kind: FrameData, RequestID: "r", Digest: bigSum, Total: 2*MaxPartSize + 5, Offset: 2 * MaxPartSize, Plain: 5, Payload: chunkZ}, nil},

	{"empty input", nil, Frame{}, ErrBadFrame},
	{"short header", rawFrame("DLCF", 1, 0, "r", chunkSum, n, 0, n, zn, chunkZ)[:20], Frame{}, ErrBadFrame},
	{"bad magic", rawFrame("DLCX", 1, 0, "r", chunkSum, n, 0, n, zn, chunkZ), Frame{}, ErrBadFrame},
	{"future version", rawFrame("DLCF", 2, 0, "r", chunkSum, n, 0, n, zn, chunkZ), Frame{}, ErrBadFrame},
	{"unknown kind", rawFrame("DLCF", 1, 7, "r", chunkSum, n, 0, n, zn, chunkZ), Frame{}, ErrBadFrame},
	{"empty request id", rawFrame("DLCF", 1, 0, "", chunkSum, n, 0, n, zn, chunkZ), Frame{}, ErrBadFrame},
	{"bad request id", rawFrame("DLCF", 1, 0, "a/b", chunkSum, n, 0, n, zn, chunkZ), Frame{}, ErrBadFrame},
	{"truncated payload", rawFrame("DLCF", 1, 0, "r", chunkSum, n, 0, n, zn+1, chunkZ), Frame{}, ErrBadFrame},
	{"trailing bytes", rawFrame("DLCF", 1, 0, "r", chunkSum, n, 0, n, zn-1, chunkZ), Frame{}, ErrBadFrame},
	{"no payload", rawFrame("DLCF", 1, 0, "r", chunkSum, n, 0, n, 0, nil), Frame{}, ErrBadFrame},
	{"part over max", rawFrame("DLCF", 1, 0, "r", chunkSum, MaxPartSize+1, 0, MaxPartSize+1, zn, chunkZ), Frame{}, ErrBadFrame},
	{"object over max", rawFrame("DLCF", 1, 0, "r", chunkSum, MaxObjectSize+1, 0, MaxPartSize, zn, chunkZ), Frame{}, ErrBadFrame},
	{"part beyond object", rawFrame("DLCF", 1, 0, "r", chunkSum, n, 0, n+1, zn, chunkZ), Frame{}, ErrBadFrame},
	{"offset overflows", rawFrame("DLCF", 1, 0, "r", chunkSum, MaxObjectSize, 0xFFFC0000, MaxPartSize, zn, chunkZ), Frame{}, ErrBadFrame},
	{"offset not aligned", rawFrame("DLCF", 1, 0, "r", bigSum, 3*MaxPartSize, 7, MaxPartSize, zn, chunkZ), Frame{}, ErrBadFrame},
	{"short part in the middle", rawFrame("DLCF", 1, 0, "r", bigSum, 3*MaxPartSize, 0, 5, zn, chunkZ), Frame{}, ErrBadFrame},
	{"empty part of non-empty object", rawFrame("DLCF", 1, 0, "r", chunkSum, n, 0, 0, zn, chunkZ), Frame{}, ErrBadFrame},
	{"not found with payload", rawFrame("DLCF", 1, 1, "r", chunkSum, 0, 0, 0, zn, chunkZ), Frame{}, ErrBadFrame},
	{"not found with lengths", rawFrame("DLCF", 1, 1, "r", chunkSum, n, 0, n, 0, nil), Frame{}, ErrBadFrame},
	{"over MaxFrameSize", rawFrame("DLCF", 1, 0, "r", chunkSum, n, 0, n, MaxFrameSize, make([]byte, MaxFrameSize)), Frame{}, ErrBadFrame},
}

func TestDecodeFrame(t *testing.T) {
	for _, tc := range frameCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecodeFrame(tc.raw)
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
			if got.Kind != tc.want.Kind || got.RequestID != tc.want.RequestID || got.Digest != tc.want.Digest ||
				got.Total != tc.want.Total || got.Offset != tc.want.Offset || got.Plain != tc.want.Plain ||
				!bytes.Equal(got.Payload, tc.want.Payload) {
				t.Fatalf("decoded %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestEncodeFrame(t *testing.T) {
	for _, tc := range frameCases {
		if tc.err != nil {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			b, err := EncodeFrame(tc.want)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(b, tc.raw) {
				t.Fatalf("encoded %x\nwant    %x", b, tc.raw)
			}
			// AppendFrame into a reused buffer that held a longer frame.
			reused := append(make([]byte, 0, 4096), bytes.Repeat([]byte{0xee}, 300)...)
			b, err = AppendFrame(reused[:0], tc.want)
			if err != nil || !bytes.Equal(b, tc.raw) {
				t.Fatalf("appended %x (%v)\nwant     %x", b, err, tc.raw)
			}
		})
	}
	if _, err := EncodeFrame(Frame{Kind: FrameData, RequestID: "r", Total: 1, Plain: 1, Payload: make([]byte, MaxFrameSize)}); !errors.Is(err, ErrBadFrame) {
		t.Fatalf("oversize frame encoded: %v", err)
	}
}

func TestFrameOpen(t *testing.T) {
	good, err := DecodeFrame(frameCases[0].raw)
	if err != nil {
		t.Fatal(err)
	}
	wrongDigest := good
	wrongDigest.Digest[0] ^= 1
	bomb := good
	bomb.Plain, bomb.Total = 10, 10 // the payload holds 1000 bytes
	garbage := good
	garbage.Payload = []byte("not zstd at all")
	part, _ := DecodeFrame(frameCases[3].raw)
	notFound, _ := DecodeFrame(frameCases[1].raw)
	cases := []struct {
		name string
		f    Frame
		want error
	}{
		{"good", good, nil},
		{"digest of other bytes", wrongDigest, ErrFrameDigest},
		{"more plain bytes than declared", bomb, ErrBadFrame},
		{"not zstd", garbage, ErrBadFrame},
		{"part of a bigger object", part, ErrBadFrame},
		{"not found", notFound, ErrNotFound},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			plain, err := tc.f.Open()
			if !errors.Is(err, tc.want) {
				t.Fatalf("err %v, want %v", err, tc.want)
			}
			if err == nil && !bytes.Equal(plain, chunkPlain) {
				t.Fatal("wrong plain bytes")
			}
			if err != nil {
				t.Log(err)
			}
		})
	}
}

func TestFrameDecompressBomb(t *testing.T) {
	huge := zstdx.Encode(nil, make([]byte, 8<<20)) // compresses to a few hundred bytes
	f := Frame{Kind: FrameData, RequestID: "r", Digest: chunkSum, Total: MaxPartSize, Plain: MaxPartSize, Payload: huge}
	b, err := EncodeFrame(f)
	if err != nil {
		t.Fatal(err)
	}
	f, err = DecodeFrame(b)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Decompress(); !errors.Is(err, ErrBadFrame) {
		t.Fatalf("8 MiB bomb in a 256 KiB frame: err %v", err)
	}
}

func TestDataFramesRoundTrip(t *testing.T) {
	rnd := rand.NewChaCha8([32]byte{1})
	object := func(n int) []byte { b := make([]byte, n); _, _ = rnd.Read(b); return b }
	cases := []struct {
		name   string
		data   []byte
		frames int
	}{
		{"empty", nil, 1},
		{"small", object(1000), 1},
		{"exactly one part", object(MaxPartSize), 1},
		{"one byte over", object(MaxPartSize + 1), 2},
		{"several parts", object(3*MaxPartSize + 17), 4},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			frames, err := DataFrames("req", tc.data)
			if err != nil {
				t.Fatal(err)
			}
			if len(frames) != tc.frames {
				t.Fatalf("%d frames, want %d", len(frames), tc.frames)
			}
			var obj *Object
			done := false
			for i := len(frames) - 1; i >= 0; i-- { // out of order on purpose
				if len(frames[i]) > MaxFrameSize {
					t.Fatalf("frame %d is %d bytes", i, len(frames[i]))
				}
				f, err := DecodeFrame(frames[i])
				if err != nil {
					t.Fatal(err)
				}
				if obj == nil {
					if obj, err = NewObject(f); err != nil {
						t.Fatal(err)
					}
				}
				if done, err = obj.Add(f); err != nil {
					t.Fatal(err)
				}
				if again, err := obj.Add(f); err != nil || again != done {
					t.Fatalf("re-adding a part: %v %v", again, err)
				}
				if done != (i == 0) {
					t.Fatalf("done=%v after part %d", done, i)
				}
			}
			if !bytes.Equal(obj.Bytes(), tc.data) {
				t.Fatal("object differs")
			}
			if len(frames) == 1 {
				f, _ := DecodeFrame(frames[0])
				plain, err := f.Open()
				if err != nil || !bytes.Equal(plain, tc.data) {
					t.Fatalf("Open: %v", err)
				}
			}
		})
	}
	if _, err := DataFrames("req", make([]byte, MaxObjectSize+1)); !errors.Is(err, ErrBadFrame) {
		t.Fatalf("oversize object: %v", err)
	}
}

func TestObjectErrors(t *testing.T) {
	data := bytes.Repeat([]byte{7}, 2*MaxPartSize)
	frames, err := DataFrames("r", data)
	if err != nil {
		t.Fatal(err)
	}
	f0, _ := DecodeFrame(frames[0])
	f1, _ := DecodeFrame(frames[1])
	obj, _ := NewObject(f0)

	other, _ := DecodeFrame(frameCases[0].raw)
	if _, err := obj.Add(other); !errors.Is(err, ErrBadFrame) {
		t.Fatalf("part of another object: %v", err)
	}
	notFound, _ := DecodeFrame(frameCases[1].raw)
	if _, err := obj.Add(notFound); !errors.Is(err, ErrNotFound) {
		t.Fatalf("not found: %v", err)
	}
	if _, err := NewObject(notFound); !errors.Is(err, ErrNotFound) {
		t.Fatalf("NewObject(not found): %v", err)
	}

	// A part whose bytes were swapped for other bytes of the right length: the whole fails.
	forged := f1
	forged.Payload = zstdx.Encode(nil, bytes.Repeat([]byte{8}, MaxPartSize))
	if _, err := obj.Add(f0); err != nil {
		t.Fatal(err)
	}
	if _, err := obj.Add(forged); !errors.Is(err, ErrFrameDigest) {
		t.Fatalf("forged part: %v", err)
	}
	if obj.Bytes() != nil {
		t.Fatal("bytes of an unverified object")
	}
	// After a digest failure the object starts over and accepts the genuine parts.
	for _, f := range []Frame{f1, f0} {
		if _, err := obj.Add(f); err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(obj.Bytes(), data) {
		t.Fatal("object not recovered after a forged part")
	}
}

func FuzzDecodeFrame(f *testing.F) {
	for _, tc := range frameCases {
		if len(tc.raw) < 4096 {
			f.Add(tc.raw)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := DecodeFrame(b)
		if err != nil {
			if !errors.Is(err, ErrBadFrame) {
				t.Fatalf("error %v does not wrap ErrBadFrame", err)
			}
			return
		}
		again, err := EncodeFrame(fr)
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("accepted frame does not re-encode to itself: %v", err)
		}
		plain, err := fr.Decompress()
		if err == nil && len(plain) != int(fr.Plain) {
			t.Fatalf("Decompress gave %d bytes, header says %d", len(plain), fr.Plain)
		}
		if err != nil && !errors.Is(err, ErrBadFrame) && !errors.Is(err, ErrNotFound) {
			t.Fatalf("Decompress error %v wraps no sentinel", err)
		}
	})
}

func BenchmarkDataFramesAndOpen(b *testing.B) {
	data := make([]byte, 64<<10)
	_, _ = rand.NewChaCha8([32]byte{2}).Read(data)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		frames, err := DataFrames("req", data)
		if err != nil {
			b.Fatal(err)
		}
		f, err := DecodeFrame(frames[0])
		if err != nil {
			b.Fatal(err)
		}
		if _, err := f.Open(); err != nil {
			b.Fatal(err)
		}
	}
}
