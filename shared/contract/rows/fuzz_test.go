package rows

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"testing"
	"unicode/utf8"

	"github.com/driftline/driftline/shared/contract"
)

// drain reads every row of r, validating each, and checks the reader's invariants.
func drain(t *testing.T, r Reader, s *contract.Schema) []contract.RawRow {
	t.Helper()
	v := contract.NewValidator(s, contract.Options{})
	out := make([]contract.Value, len(s.Fields))
	var rows []contract.RawRow
	var row contract.RawRow
	var viol []contract.Violation
	for n := int64(1); ; n++ {
		err := r.Next(&row)
		if errors.Is(err, io.EOF) {
			return rows
		}
		if err != nil {
			return rows // a stream-ending error is a clean outcome too
		}
		if row.Num != n || len(row.Cells) != len(s.Fields) {
			t.Fatalf("row %d: Num %d, %d cells", n, row.Num, len(row.Cells))
		}
		viol, _ = v.Validate(&row, out, viol[:0])
		for _, x := range viol {
			if !utf8.ValidString(x.Value) || !utf8.ValidString(x.Field) || len(x.Value) > contract.MaxViolationValue {
				t.Fatalf("violation not safe to report: %+v", x)
			}
		}
		rows = append(rows, cloneRow(&row))
		if n > 1<<20 {
			t.Fatal("reader does not end")
		}
	}
}

func cloneRow(r *contract.RawRow) contract.RawRow {
	c := contract.RawRow{Num: r.Num, ParseErr: r.ParseErr}
	for _, cell := range r.Cells {
		c.Cells = append(c.Cells, contract.RawCell{Kind: cell.Kind, Data: bytes.Clone(cell.Data)})
	}
	return c
}

func seeds(f *testing.F, in ...string) {
	for _, s := range in {
		f.Add([]byte(s))
	}
}

func FuzzCSV(f *testing.F) {
	seeds(f, "a,b,c\n1.5,x,2\n", "\xef\xbb\xbfc,b,a\r\n3,\"x,\"\"y\"\"\nz\",1\r\n", "a,d\n1,9\n1\n", "a,b\n1,x\"y\n2,z\n", "a,\"b\n", "", "b\n\xff\xfe\n")
	s := schema(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		drain(t, NewCSV(bytes.NewReader(data), s), s)
	})
}

// FuzzJSONL checks the hand-written scanner against encoding/json line by line: a line is a
// row without a parse error exactly when it is one valid JSON object, and then its cells hold
// what encoding/json decodes.
func FuzzJSONL(f *testing.F) {
	seeds(f, "{\"a\":1.5,\"b\":\"x\",\"c\":2}\n{\"c\":-3e2,\"a\":null}\n", `{"b":"a\"b\\c\/\n\u00e9\ud83d\ude00"}`,
		`{"a":true,"d":{"x":[1,2,{"y":null}]},"e":"z"}`, "{\"a\":1\n[1]\n{\"a\":01}\n", `{"b":"\ud83d!"}`, "\xef\xbb\xbf{}", `{"b":"\xff"}`)
	s := schema(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		rows := drain(t, NewJSONL(bytes.NewReader(data), s), s)
		data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
		var lines [][]byte
		for _, l := range bytes.Split(data, []byte("\n")) {
			if l = trimSpace(l); len(l) > 0 {
				lines = append(lines, l)
			}
		}
		if len(lines) != len(rows) {
			t.Fatalf("%d non-blank lines, %d rows", len(lines), len(rows))
		}
		for i, l := range lines {
			compareWithStdlib(t, s, l, &rows[i])
		}
	})
}

func compareWithStdlib(t *testing.T, s *contract.Schema, l []byte, row *contract.RawRow) {
	if bytes.Count(l, []byte("["))+bytes.Count(l, []byte("{")) > maxDepth {
		return // deeper than the scanner accepts by design
	}
	var m map[string]any
	stdOK := json.Valid(l) && l[0] == '{' && json.Unmarshal(l, &m) == nil
	if stdOK != (row.ParseErr == "") {
		t.Fatalf("line %q: encoding/json ok=%v, scanner parse error %q", l, stdOK, row.ParseErr)
	}
	if !stdOK {
		return
	}
	for i, f := range s.Fields {
		v, present := m[f.Name]
		cell := row.Cells[i]
		if present != (cell.Kind != contract.RawAbsent) {
			t.Fatalf("line %q field %s: present=%v, cell %+v", l, f.Name, present, cell)
		}
		if str, ok := v.(string); ok && utf8.Valid(cell.Data) && cell.Kind == contract.RawString && str != string(cell.Data) {
			t.Fatalf("line %q field %s: encoding/json %q, scanner %q", l, f.Name, str, cell.Data)
		}
	}
}

func FuzzJSONArray(f *testing.F) {
	seeds(f, " [ {\"a\":1,\"b\":\"x,]}\"} ,\n{\"c\":2} ] ", `[{"a":1}, 5, {"a":}, {"a":2}]`, `[{"d":[{"x":"]"}],"a":3}]`, `[{"a":1} {"a":2}]`, `[{"a":1},{"a":`, "[]", "")
	s := schema(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		rows := drain(t, NewJSONArray(bytes.NewReader(data), s), s)
		var elems []json.RawMessage
		if json.Unmarshal(data, &elems) != nil {
			return
		}
		if bytes.Count(data, []byte("["))+bytes.Count(data, []byte("{")) > maxDepth {
			return
		}
		// A valid array yields one row per element, and each agrees with encoding/json.
		if len(rows) != len(elems) {
			t.Fatalf("%d elements, %d rows", len(elems), len(rows))
		}
		for i, e := range elems {
			compareWithStdlib(t, s, bytes.TrimSpace(e), &rows[i])
		}
	})
}

func FuzzPayload(f *testing.F) {
	seeds(f, `{"a":1,"b":"x"}`, " {\n \"a\": 1\n}\n", `[{"a":1},{"a":2}]`, `{"a":1}{"a":2}`, `42`, ``)
	s := schema(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		rows := drain(t, NewPayload(data, s), s)
		var arr []json.RawMessage
		if len(rows) == 0 && (json.Unmarshal(data, &arr) != nil || len(arr) != 0) {
			t.Fatal("only an empty array yields no row")
		}
		if l := trimSpace(data); len(l) > 0 && l[0] == '{' {
			if len(rows) != 1 {
				t.Fatalf("an object payload gave %d rows", len(rows))
			}
			compareWithStdlib(t, s, l, &rows[0])
		}
	})
}
