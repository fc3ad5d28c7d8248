package drift

import (
	"encoding/json"
	"testing"

	"github.com/driftline/driftline/shared/profile"
	"github.com/driftline/driftline/shared/zstdx"
)

// plain strips the version byte and zstd, so the fuzzer mutates the profile encoding itself.
func plain(f *testing.F, p *profile.Profile) []byte {
	b, err := zstdx.Decode(nil, p.Encode()[1:], 0)
	if err != nil {
		f.Fatal(err)
	}
	return b
}

// FuzzCompare feeds Compare profiles decoded from arbitrary (plain) bytes, as the hub does
// with what devices send: no panic, and every report must encode as JSON (no NaN, no infinity).
func FuzzCompare(f *testing.F) {
	small := plain(f, mixed(f, 1, 50, 0, []string{"a", "b"}))
	large := plain(f, mixed(f, 2, 3000, 1, []string{"a", "c"}))
	f.Add(small, large)
	f.Add(large, small)
	f.Add(small, small)
	f.Fuzz(func(t *testing.T, a, b []byte) {
		ref, err := profile.Decode(zstdx.Encode([]byte{profile.EncodingVersion}, a))
		if err != nil {
			return
		}
		cur, err := profile.Decode(zstdx.Encode([]byte{profile.EncodingVersion}, b))
		if err != nil {
			return
		}
		for _, opts := range []Options{{}, {SmallReference: 1 << 62}} {
			rep, err := Compare(ref, cur, opts)
			if err != nil {
				return
			}
			if _, err := json.Marshal(rep); err != nil {
				t.Fatalf("report does not encode: %v", err)
			}
		}
		if th, err := Calibrate([]*profile.Profile{cur, cur}, ref, CalibrateOptions{}); err == nil {
			_ = Apply(ref.Clone(), th)
		}
	})
}
