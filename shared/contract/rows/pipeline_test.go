package rows

import (
	"errors"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/driftline/driftline/shared/contract"
)

// validateStream reads and validates every row, returning the violations and the valid count.
func validateStream(t *testing.T, r Reader, s *contract.Schema) ([]contract.Violation, int) {
	t.Helper()
	v := contract.NewValidator(s, contract.Options{})
	out := make([]contract.Value, len(s.Fields))
	var row contract.RawRow
	var all []contract.Violation
	valid := 0
	for {
		err := r.Next(&row)
		if errors.Is(err, io.EOF) {
			return all, valid
		}
		if err != nil {
			t.Fatal(err)
		}
		var ok bool
		if all, ok = v.Validate(&row, out, all); ok {
			valid++
		}
	}
}

// TestNABDuplicateTimestamps reads a real sensor series whose clock steps back: the repeated
// timestamps break the primary key.
func TestNABDuplicateTimestamps(t *testing.T) {
	s, err := contract.Parse([]byte(`{
		"fields": [
			{"name": "timestamp", "type": "datetime", "format": "any"},
			{"name": "value", "type": "number", "constraints": {"minimum": 0, "maximum": 200}}
		],
		"primaryKey": "timestamp"
	}`))
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open("testdata/nab_machine_temperature_excerpt.csv")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	viol, valid := validateStream(t, NewCSV(f, s), s)
	if valid != 88 || len(viol) != 12 {
		t.Fatalf("valid %d, violations %d, want 88 and 12: %+v", valid, len(viol), viol)
	}
	for i, x := range viol {
		if x.Row != int64(51+i) || x.Field != "timestamp" || x.Rule != "unique" {
			t.Errorf("violation %d = %+v, want row %d timestamp unique", i, x, 51+i)
		}
	}
	if viol[0].Value != "2014-01-07 02:00:00" {
		t.Errorf("first duplicate = %q", viol[0].Value)
	}
}

// TestPipeline runs the same readings as CSV and as JSONL through the validator.
func TestPipeline(t *testing.T) {
	s, err := contract.Parse([]byte(`{
		"fields": [
			{"name": "id", "type": "integer"},
			{"name": "temp", "type": "number", "constraints": {"exclusiveMaximum": 100}},
			{"name": "mode", "constraints": {"enum": ["auto", "manual"]}},
			{"name": "at", "type": "datetime"}
		],
		"missingValues": ["", "NA"],
		"primaryKey": "id"
	}`))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"2 temp exclusiveMaximum 100",
		"3 id unique 1",
		"3 at type 2020-01-01T00:00:00",
		"4 mode enum AUTO",
		"4 temp type hot",
		"5 id required NA",
		"6 column 5 extra_column 1",
	}
	csvIn := "id,temp,mode,at\n" +
		"1,20.5,auto,2020-01-01T00:00:00Z\n" +
		"2,100,manual,2020-01-01T00:01:00+01:00\n" +
		"1,NA,,2020-01-01T00:00:00\n" +
		"3,hot,AUTO,\n" +
		"NA,1,auto,\n" +
		"4,1,auto,,1\n"
	jsonlIn := `{"id":1,"temp":20.5,"mode":"auto","at":"2020-01-01T00:00:00Z"}
{"id":"2","temp":100.0,"mode":"manual","at":"2020-01-01T00:01:00+01:00"}
{"id":1.0,"temp":null,"mode":"","at":"2020-01-01T00:00:00"}
{"id":3,"temp":"hot","mode":"AUTO","at":null}
{"id":null,"temp":1,"mode":"auto","at":"NA"}
{"id":4,"temp":1,"mode":"auto","at":"","x":1}
`
	for name, r := range map[string]Reader{
		"csv":   NewCSV(strings.NewReader(csvIn), s),
		"jsonl": NewJSONL(strings.NewReader(jsonlIn), s),
	} {
		viol, valid := validateStream(t, r, s)
		var got []string
		for _, x := range viol {
			got = append(got, strings.Join([]string{strconv.FormatInt(x.Row, 10), x.Field, x.Rule, x.Value}, " "))
		}
		slices.Sort(got)
		w := slices.Clone(want)
		if name == "jsonl" {
			// Values are reported as spelt: JSON null has no text, and "1.0", "100.0" keep
			// their decimals; an extra JSON key has a name.
			w[0] = "2 temp exclusiveMaximum 100.0"
			w[1] = "3 id unique 1.0"
			w[5] = "5 id required "
			w[6] = "6 x extra_column 1"
		}
		slices.Sort(w)
		if !slices.Equal(got, w) || valid != 1 {
			t.Errorf("%s: valid %d\ngot  %q\nwant %q", name, valid, got, w)
		}
	}
}

func TestEncodingViolations(t *testing.T) {
	s := schema(t)
	for name, r := range map[string]Reader{
		"csv":     NewCSV(strings.NewReader("b,a\nok,1\nx\xffy,2\n"), s),
		"jsonl":   NewJSONL(strings.NewReader("{\"b\":\"ok\",\"a\":1}\n{\"b\":\"x\xffy\",\"a\":2}\n"), s),
		"payload": NewPayload([]byte("[{\"b\":\"ok\",\"a\":1},{\"b\":\"x\xffy\",\"a\":2}]"), s),
	} {
		viol, valid := validateStream(t, r, s)
		// Every row lacks field c; row 2 also has a bad b.
		var enc []contract.Violation
		for _, x := range viol {
			if x.Rule == contract.RuleEncoding {
				enc = append(enc, x)
			}
		}
		if valid != 0 || len(enc) != 1 || enc[0].Row != 2 || enc[0].Field != "b" || enc[0].Value != "x\uFFFDy" {
			t.Errorf("%s: valid %d, encoding violations %+v", name, valid, enc)
		}
	}
	viol, _ := validateStream(t, NewPayload([]byte("{\"\xff\":1,\"a\":1,\"b\":\"\",\"c\":1}"), s), s)
	if len(viol) != 1 || viol[0].Rule != contract.RuleExtraColumn || viol[0].Field != "\uFFFD" {
		t.Errorf("invalid key: %+v", viol)
	}
}
