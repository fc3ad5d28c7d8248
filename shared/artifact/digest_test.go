package artifact

import (
	"crypto/sha256"
	"errors"
	"strings"
	"testing"
)

func TestParseDigest(t *testing.T) {
	good := DigestOf([]byte("x"))
	cases := []struct {
		name string
		in   string
		ok   bool
	}{
		{"canonical", good, true},
		{"empty", "", false},
		{"no prefix", good[len(DigestPrefix):], false},
		{"other algorithm", "sha512:" + good[len(DigestPrefix):], false},
		{"upper-case hex", strings.ToUpper(good[:7]) + strings.ToUpper(good[7:]), false},
		{"short", good[:len(good)-1], false},
		{"long", good + "0", false},
		{"not hex", good[:len(good)-1] + "g", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sum, err := ParseDigest(tc.in)
			if tc.ok != (err == nil) {
				t.Fatalf("ParseDigest(%q) err %v, want ok=%v", tc.in, err, tc.ok)
			}
			if err != nil {
				if !errors.Is(err, ErrBadDigest) {
					t.Fatalf("err %v does not wrap ErrBadDigest", err)
				}
				return
			}
			if sum != sha256.Sum256([]byte("x")) || FormatDigest(sum) != tc.in {
				t.Fatal("digest does not round-trip")
			}
		})
	}
}

func FuzzParseDigest(f *testing.F) {
	f.Add(DigestOf(nil))
	f.Add("sha256:")
	f.Add("sha256:ZZ")
	f.Fuzz(func(t *testing.T, s string) {
		sum, err := ParseDigest(s)
		if err != nil {
			return
		}
		if FormatDigest(sum) != s {
			t.Fatalf("accepted %q but formats it as %q", s, FormatDigest(sum))
		}
	})
}
