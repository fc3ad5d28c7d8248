package rows

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/driftline/driftline/shared/contract"
)

const testSchema = `{"fields":[{"name":"a","type":"number"},{"name":"b"},{"name":"c","type":"integer"}]}`

func schema(t testing.TB) *contract.Schema {
	t.Helper()
	s, err := contract.Parse([]byte(testSchema))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// describe renders a row compactly: "n a=N:1 b=S:x c=- +d=4" or "n PARSE".
func describe(s *contract.Schema, r *contract.RawRow) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d", r.Num)
	if r.ParseErr != "" {
		b.WriteString(" PARSE")
		return b.String()
	}
	kinds := map[contract.RawKind]string{contract.RawNull: "0", contract.RawString: "S", contract.RawNumber: "N", contract.RawBool: "B", contract.RawComplex: "C"}
	for i, f := range s.Fields {
		c := r.Cells[i]
		if c.Kind == contract.RawAbsent {
			fmt.Fprintf(&b, " %s=-", f.Name)
			continue
		}
		fmt.Fprintf(&b, " %s=%s:%s", f.Name, kinds[c.Kind], c.Data)
	}
	for _, x := range r.Extra {
		fmt.Fprintf(&b, " +%s=%s", x.Name, x.Value)
	}
	return b.String()
}

func readAll(t testing.TB, r Reader, s *contract.Schema) ([]string, error) {
	t.Helper()
	var out []string
	var row contract.RawRow
	for range 10000 {
		err := r.Next(&row)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, describe(s, &row))
	}
	t.Fatal("reader does not end")
	return nil, nil
}

type readerCase struct {
	name  string
	input string
	want  []string
	err   error
}

func runCases(t *testing.T, cases []readerCase, open func(io.Reader, *contract.Schema) Reader) {
	s := schema(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, mode := range []string{"whole", "one byte"} {
				var in io.Reader = strings.NewReader(tc.input)
				if mode == "one byte" {
					in = iotest.OneByteReader(in)
				}
				got, err := readAll(t, open(in, s), s)
				if !errors.Is(err, tc.err) {
					t.Fatalf("%s: err = %v, want %v", mode, err, tc.err)
				}
				if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
					t.Errorf("%s:\ngot  %q\nwant %q", mode, got, tc.want)
				}
			}
		})
	}
}

func TestJSONL(t *testing.T) {
	runCases(t, []readerCase{
		{"basic", "{\"a\":1.5,\"b\":\"x\",\"c\":2}\n{\"c\":-3e2,\"a\":null}\n", []string{"1 a=N:1.5 b=S:x c=N:2", "2 a=0: b=- c=N:-3e2"}, nil},
		{"crlf, blanks, bom, no final newline", "\xef\xbb\xbf{\"b\":\"x\"}\r\n\r\n  \n{\"b\":\"y\"}", []string{"1 a=- b=S:x c=-", "2 a=- b=S:y c=-"}, nil},
		{"escapes", `{"b":"a\"b\\c\/\n\u00e9\ud83d\ude00"}`, []string{"1 a=- b=S:a\"b\\c/\né😀 c=-"}, nil},
		{"lone surrogate", `{"b":"\ud83d!"}`, []string{"1 a=- b=S:\uFFFD! c=-"}, nil},
		{"escaped key", `{"\u0062":"x"}`, []string{"1 a=- b=S:x c=-"}, nil},
		{"extra and nested", `{"a":true,"d":{"x":[1,2,{"y":null}]},"e":"z"}`, []string{`1 a=B:true b=- c=- +d={"x":[1,2,{"y":null}]} +e="z"`}, nil},
		{"complex value", `{"a":[1,2]}`, []string{"1 a=C:[1,2] b=- c=-"}, nil},
		{"empty object", `{}`, []string{"1 a=- b=- c=-"}, nil},
		{"malformed goes on", "{\"a\":1\n{\"a\":\n[1]\n{\"a\":01}\n{\"a\":1} x\n\"s\"\n{\"a\":2}\n", []string{"1 PARSE", "2 PARSE", "3 PARSE", "4 PARSE", "5 PARSE", "6 PARSE", "7 a=N:2 b=- c=-"}, nil},
		{"bad literals and numbers", "{\"a\":tru}\n{\"a\":-}\n{\"a\":1.}\n{\"a\":1e}\n{\"a\":nul}\n", []string{"1 PARSE", "2 PARSE", "3 PARSE", "4 PARSE", "5 PARSE"}, nil},
		{"bad strings", "{\"b\":\"a\tb\"}\n{\"b\":\"\\x\"}\n{\"b\":\"\\u12\"}\n{\"b\":\"abc}\n", []string{"1 PARSE", "2 PARSE", "3 PARSE", "4 PARSE"}, nil},
		{"empty", "", nil, nil},
	}, func(r io.Reader, s *contract.Schema) Reader { return NewJSONL(r, s) })
}

func TestJSONArray(t *testing.T) {
	runCases(t, []readerCase{
		{"basic", " [ {\"a\":1,\"b\":\"x,]}\"} ,\n{\"c\":2} ] ", []string{"1 a=N:1 b=S:x,]} c=-", "2 a=- b=- c=N:2"}, nil},
		{"empty array", "[ ]", nil, nil},
		{"text after", "[{\"a\":1}] x", []string{"1 a=N:1 b=- c=-", "2 PARSE"}, nil},
		{"text after empty", "[] x", []string{"1 PARSE"}, nil},
		{"bad element goes on", `[{"a":1}, 5, {"a":}, {"a":2}]`, []string{"1 a=N:1 b=- c=-", "2 PARSE", "3 PARSE", "4 a=N:2 b=- c=-"}, nil},
		{"nested", `[{"d":[{"x":"]"}],"a":3}]`, []string{`1 a=N:3 b=- c=- +d=[{"x":"]"}]`}, nil},
		{"missing comma stops", `[{"a":1} {"a":2}]`, []string{"1 a=N:1 b=- c=-", "2 PARSE"}, nil},
		{"truncated", `[{"a":1},{"a":`, []string{"1 a=N:1 b=- c=-", "2 PARSE"}, nil},
		{"not an array", `{"a":1}`, []string{"1 PARSE"}, nil},
		{"empty input", ``, []string{"1 PARSE"}, nil},
	}, func(r io.Reader, s *contract.Schema) Reader { return NewJSONArray(r, s) })
}

func TestCSV(t *testing.T) {
	runCases(t, []readerCase{
		{"basic", "a,b,c\n1.5,x,2\n,,\n", []string{"1 a=S:1.5 b=S:x c=S:2", "2 a=S: b=S: c=S:"}, nil},
		{"bom crlf quotes", "\xef\xbb\xbfc,b,a\r\n3,\"x,\"\"y\"\"\nz\",1\r\n", []string{"1 a=S:1 b=S:x,\"y\"\nz c=S:3"}, nil},
		{"missing and extra columns", "a,d\n1,9\n", []string{"1 a=S:1 b=- c=- +d=9"}, nil},
		{"short and long rows", "a,b,c\n1\n1,2,3,4\n", []string{"1 a=S:1 b=- c=-", "2 a=S:1 b=S:2 c=S:3 +column 4=4"}, nil},
		{"duplicate header", "a,a\n1,2\n", []string{"1 a=S:1 b=- c=- +a=2"}, nil},
		{"bare quote goes on", "a,b\n1,x\"y\n2,z\n", []string{"1 PARSE", "2 a=S:2 b=S:z c=-"}, nil},
		{"header only", "a,b,c\n", nil, nil},
		{"empty", "", nil, nil},
		{"bad header", "a,\"b\n", nil, ErrBadHeader},
	}, func(r io.Reader, s *contract.Schema) Reader { return NewCSV(r, s) })
}

func TestPayload(t *testing.T) {
	s := schema(t)
	cases := []struct {
		in   string
		want []string
	}{
		{`{"a":1,"b":"x"}`, []string{"1 a=N:1 b=S:x c=-"}},
		{" {\n \"a\": 1\n}\n", []string{"1 a=N:1 b=- c=-"}},
		{`[{"a":1},{"a":2}]`, []string{"1 a=N:1 b=- c=-", "2 a=N:2 b=- c=-"}},
		{`{"a":1}{"a":2}`, []string{"1 PARSE"}},
		{`42`, []string{"1 PARSE"}},
		{``, []string{"1 PARSE"}},
	}
	for _, tc := range cases {
		got, err := readAll(t, NewPayload([]byte(tc.in), s), s)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
			t.Errorf("%q:\ngot  %q\nwant %q", tc.in, got, tc.want)
		}
	}
}

func TestOpenAndFormat(t *testing.T) {
	s := schema(t)
	for _, tc := range []struct {
		name string
		in   string
		want string
	}{
		{"x.json", " [{\"a\":1}]", "1 a=N:1 b=- c=-"},
		{"x.json", "{\"a\":1}\n", "1 a=N:1 b=- c=-"},
		{"x.NDJSON", "{\"a\":1}\n", "1 a=N:1 b=- c=-"},
		{"x.csv", "a\n1\n", "1 a=S:1 b=- c=-"},
	} {
		f, err := FormatOf(tc.name)
		if err != nil {
			t.Fatal(err)
		}
		r, err := Open(strings.NewReader(tc.in), f, s)
		if err != nil {
			t.Fatal(err)
		}
		got, err := readAll(t, r, s)
		if err != nil || len(got) != 1 || got[0] != tc.want {
			t.Errorf("%s %q: %q %v", tc.name, tc.in, got, err)
		}
	}
	if _, err := FormatOf("x.parquet"); !errors.Is(err, ErrUnknownFormat) {
		t.Errorf("FormatOf(parquet) = %v", err)
	}
}

func TestLongLines(t *testing.T) {
	defer func(old int) { maxLine = old }(maxLine)
	maxLine = 100 // JSONL checks lines that overflow its 64 KiB buffer, so the rows below are 100 KiB
	s := schema(t)
	big := `{"b":"` + strings.Repeat("x", 100<<10) + `"}`
	got, err := readAll(t, NewJSONL(strings.NewReader(big+"\n{\"a\":1}\n"), s), s)
	if err != nil || len(got) != 2 || got[0] != "1 PARSE" || got[1] != "2 a=N:1 b=- c=-" {
		t.Errorf("JSONL long line: %q %v", got, err)
	}
	got, err = readAll(t, NewJSONArray(strings.NewReader("["+big+`,{"a":1}]`), s), s)
	if err != nil || len(got) != 2 || got[0] != "1 PARSE" || got[1] != "2 a=N:1 b=- c=-" {
		t.Errorf("array long element: %q %v", got, err)
	}
	_, err = readAll(t, NewCSV(strings.NewReader("a,b\n1,"+strings.Repeat("x", 100<<10)), s), s)
	if !errors.Is(err, ErrLineTooLong) {
		t.Errorf("CSV long line: err = %v, want ErrLineTooLong", err)
	}
}
