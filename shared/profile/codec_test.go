package profile

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"testing"

	"github.com/driftline/driftline/shared/contract"
	"github.com/driftline/driftline/shared/zstdx"
)

func TestRoundTrip(t *testing.T) {
	cases := map[string]*Profile{
		"empty": mustProfile(t, nil),
		"small": mustProfile(t, testRows(1, 50)),
		"large": mustProfile(t, testRows(2, 20000)),
		"merged": func() *Profile {
			p := mustProfile(t, testRows(3, 5000))
			_ = p.Merge(mustProfile(t, testRows(4, 7000)))
			return p
		}(),
		"all-nil": mustProfile(t, [][]contract.Value{make([]contract.Value, len(testCols))}),
		"overflowing sums": mustProfile(t, [][]contract.Value{
			{num(math.MaxFloat64), num(-math.MaxFloat64), str("a"), {}},
			{num(math.MaxFloat64), num(-math.MaxFloat64), str("a"), {}},
		}),
	}
	for name, p := range cases {
		enc := p.Encode()
		q, err := Decode(enc)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if again := q.Encode(); !bytes.Equal(enc, again) {
			t.Fatalf("%s: re-encoding differs", name)
		}
		// A decoded profile keeps working: adding the same rows to both keeps them equal.
		more := testRows(9, 3000)
		for _, row := range more {
			if err := p.Add(row); err != nil {
				t.Fatal(err)
			}
			if err := q.Add(row); err != nil {
				t.Fatal(err)
			}
		}
		if !bytes.Equal(p.Encode(), q.Encode()) {
			t.Fatalf("%s: decoded profile diverged after Add", name)
		}
		t.Logf("%s: %d rows, %d bytes, %d bytes per column", name, p.Rows(), len(enc), len(enc)/len(testCols))
	}
}

// plainOf returns the plain (uncompressed) encoding, for building corrupt cases.
func plainOf(p *Profile) []byte { return p.appendPlain(nil) }

func frame(plain []byte) []byte { return zstdx.Encode([]byte{EncodingVersion}, plain) }

func TestDecodeRefusesBadInput(t *testing.T) {
	good := plainOf(mustProfile(t, testRows(5, 100)))
	withRows := func(rows uint64) []byte {
		b := binary.AppendUvarint(nil, rows)
		_, n := binary.Uvarint(good)
		return append(b, good[n:]...)
	}
	cases := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, ErrCorrupt},
		{"version", append([]byte{9}, frame(good)[1:]...), ErrVersion},
		{"not zstd", []byte{EncodingVersion, 1, 2, 3, 4, 5, 6}, ErrCorrupt},
		{"truncated", frame(good[:len(good)-3]), ErrCorrupt},
		{"trailing", frame(append(bytes.Clone(good), 0)), ErrCorrupt},
		{"rows mismatch", frame(withRows(101)), ErrCorrupt},
		{"huge column count", frame(binary.AppendUvarint(binary.AppendUvarint(nil, 1), 1<<40)), ErrCorrupt},
		{"bomb", frame(make([]byte, MaxPlainBytes+1)), zstdx.ErrTooLarge},
	}
	for _, tc := range cases {
		_, err := Decode(tc.in)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: err %v, want %v", tc.name, err, tc.want)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(mustProfile(f, nil).Encode())
	f.Add(mustProfile(f, testRows(1, 30)).Encode())
	f.Add(mustProfile(f, testRows(2, 3000)).Encode())
	f.Add(frame(plainOf(mustProfile(f, testRows(3, 10)))[:20]))
	f.Add([]byte{EncodingVersion})
	if v1, err := os.ReadFile("testdata/profile-v1.bin"); err == nil {
		f.Add(v1)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := Decode(b)
		if err != nil {
			return
		}
		// Whatever decodes must re-encode to a decodable profile and stay usable.
		q, err := Decode(p.Encode())
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if err := q.Merge(p); err != nil {
			t.Fatalf("merge with itself: %v", err)
		}
		// And keeps accepting rows: drive every sketch through compactions.
		row := make([]contract.Value, q.Len())
		for i := range 500 {
			for c := range row {
				if q.At(c).Kind() == Numeric {
					row[c] = contract.Value{Kind: contract.KindNumber, Num: float64(i % 37)}
				} else {
					row[c] = contract.Value{Kind: contract.KindString, Str: string(rune('a' + i%29))}
				}
			}
			if err := q.Add(row); err != nil {
				t.Fatalf("add after decode: %v", err)
			}
		}
		for c := range q.Len() {
			col := q.At(c)
			_ = col.Distinct()
			if col.Quantiles() != nil {
				_ = col.Quantiles().CDF().Quantile(0.5)
			}
		}
	})
}

// FuzzDecodePlain fuzzes the plain encoding directly, past the zstd layer.
func FuzzDecodePlain(f *testing.F) {
	f.Add(plainOf(mustProfile(f, nil)))
	f.Add(plainOf(mustProfile(f, testRows(1, 30))))
	f.Add(plainOf(mustProfile(f, testRows(2, 1500))))
	many, err := New([]Column{{"c", Categorical}})
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range zipfStream(5000, 1000) { // purges: counters, stream length and offset
		if err := many.Add([]contract.Value{{Kind: contract.KindString, Str: s}}); err != nil {
			f.Fatal(err)
		}
	}
	f.Add(plainOf(many))
	f.Fuzz(func(t *testing.T, plain []byte) {
		p, err := Decode(frame(plain))
		if err != nil {
			return
		}
		// Accepted bytes may be non-canonical (overlong varints, dense registers), but their
		// re-encoding must be canonical: it decodes and re-encodes to itself.
		canon := plainOf(p)
		q, err := Decode(frame(canon))
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if !bytes.Equal(plainOf(q), canon) {
			t.Fatal("re-encoding is not stable")
		}
	})
}
