package contract

import (
	"errors"
	"os"
	"testing"
	"unicode/utf8"
)

// FuzzParse checks that Parse never panics, refuses with a listed problem, and that an accepted
// contract survives its canonical form unchanged.
func FuzzParse(f *testing.F) {
	full, err := os.ReadFile("testdata/full.json")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(full)
	for _, s := range []string{
		`{"fields":[{"name":"a","type":"number","constraints":{"minimum":5,"maximum":1}}]}`,
		`{"fields":[{"name":"a","type":"date","format":"%d/%m/%Y","constraints":{"enum":["01/02/2020"]}}]}`,
		`{"fields":[{"name":"a","constraints":{"pattern":"(["}}],"primaryKey":"b"}`,
		`{"fields":[{"name":"a","type":"boolean","trueValues":["y"]}],"x-driftline":{"window":{"rows":5}}}`,
		`{"fields":[]}`, `[]`, `{`, `null`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Parse(data)
		if err != nil {
			var ce *ContractError
			if !errors.As(err, &ce) || len(ce.Problems) == 0 {
				t.Fatalf("error without problems: %v", err)
			}
			return
		}
		out, err := s.MarshalJSON()
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		again, err := Parse(out)
		if err != nil {
			t.Fatalf("canonical form refused: %v\n%s", err, out)
		}
		if again.Digest() != s.Digest() {
			t.Fatalf("digest changed on round trip:\n%s", out)
		}
	})
}

// FuzzValidate feeds arbitrary cell text of every kind to every field type and constraint.
func FuzzValidate(f *testing.F) {
	full, err := os.ReadFile("testdata/full.json")
	if err != nil {
		f.Fatal(err)
	}
	s, err := Parse(full)
	if err != nil {
		f.Fatal(err)
	}
	f.Add("abc", uint8(RawString))
	f.Add("2020-01-01T00:00:00Z", uint8(RawString))
	f.Add("1,000", uint8(RawString))
	f.Add("3.0", uint8(RawNumber))
	f.Add("true", uint8(RawBool))
	f.Add("\xff", uint8(RawString))
	v := NewValidator(s, Options{MaxKeys: 64})
	out := make([]Value, len(s.Fields))
	f.Fuzz(func(t *testing.T, text string, kind uint8) {
		cells := make([]RawCell, len(s.Fields))
		for i := range cells {
			cells[i] = RawCell{Kind: RawKind(kind % 6), Data: []byte(text)}
		}
		viol, ok := v.Validate(&RawRow{Num: 1, Cells: cells}, out, nil)
		if ok != (len(viol) == 0) {
			t.Fatalf("ok=%v with %d violations", ok, len(viol))
		}
		for _, x := range viol {
			if !utf8.ValidString(x.Value) || len(x.Value) > MaxViolationValue {
				t.Fatalf("unsafe violation value %q", x.Value)
			}
		}
	})
}
