package contract

import (
	"math"
	"slices"
	"strings"
	"testing"
	"time"
)

func str(s string) RawCell { return RawCell{Kind: RawString, Data: []byte(s)} }
func num(s string) RawCell { return RawCell{Kind: RawNumber, Data: []byte(s)} }
func boolean(b bool) RawCell {
	if b {
		return RawCell{Kind: RawBool, Data: []byte("true")}
	}
	return RawCell{Kind: RawBool, Data: []byte("false")}
}

var null = RawCell{Kind: RawNull}

func ms(s string) float64 {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return float64(t.Unix())*1000 + float64(t.Nanosecond())/1e6
}

// TestValidateCell covers every type and constraint, one field per case, including the traps
// the Table Schema standard sets (integer given 3.0 and "3", missingValues, zones, anchored
// patterns, typed enums, exclusive bounds).
func TestValidateCell(t *testing.T) {
	cases := []struct {
		name    string
		field   string // one field object
		missing string // schema missingValues JSON, "" for the default
		cell    RawCell
		rule    string // "" when valid
		want    Value  // checked when valid
	}{
		// integer
		{"integer csv", `{"name":"f","type":"integer"}`, "", str("3"), "", Value{Kind: KindNumber, Num: 3}},
		{"integer json", `{"name":"f","type":"integer"}`, "", num("-3"), "", Value{Kind: KindNumber, Num: -3}},
		{"integer json 3.0", `{"name":"f","type":"integer"}`, "", num("3.0"), "", Value{Kind: KindNumber, Num: 3}},
		{"integer json 1e2", `{"name":"f","type":"integer"}`, "", num("1e2"), "", Value{Kind: KindNumber, Num: 100}},
		{"integer json 3.5", `{"name":"f","type":"integer"}`, "", num("3.5"), "type", Value{}},
		{"integer text 3.0", `{"name":"f","type":"integer"}`, "", str("3.0"), "type", Value{}},
		{"integer text spaces", `{"name":"f","type":"integer"}`, "", str(" 3"), "type", Value{}},
		{"integer groupChar", `{"name":"f","type":"integer","groupChar":","}`, "", str("1,000"), "", Value{Kind: KindNumber, Num: 1000}},
		{"integer bareNumber false", `{"name":"f","type":"integer","bareNumber":false}`, "", str("€ 12"), "", Value{Kind: KindNumber, Num: 12}},
		{"integer huge", `{"name":"f","type":"integer"}`, "", str("123456789012345678901234"), "", Value{Kind: KindNumber, Num: 123456789012345678901234}},
		{"integer bool", `{"name":"f","type":"integer"}`, "", boolean(true), "type", Value{}},
		// number
		{"number csv", `{"name":"f","type":"number"}`, "", str("1.5"), "", Value{Kind: KindNumber, Num: 1.5}},
		{"number leading dot", `{"name":"f","type":"number"}`, "", str(".5"), "", Value{Kind: KindNumber, Num: 0.5}},
		{"number exp", `{"name":"f","type":"number"}`, "", str("-2E3"), "", Value{Kind: KindNumber, Num: -2000}},
		{"number json", `{"name":"f","type":"number"}`, "", num("2.25"), "", Value{Kind: KindNumber, Num: 2.25}},
		{"number INF", `{"name":"f","type":"number"}`, "", str("INF"), "", Value{Kind: KindNumber, Num: math.Inf(1)}},
		{"number -INF", `{"name":"f","type":"number"}`, "", str("-INF"), "", Value{Kind: KindNumber, Num: math.Inf(-1)}},
		{"number inf lower", `{"name":"f","type":"number"}`, "", str("inf"), "type", Value{}},
		{"number hex", `{"name":"f","type":"number"}`, "", str("0x10"), "type", Value{}},
		{"number underscore", `{"name":"f","type":"number"}`, "", str("1_000"), "type", Value{}},
		{"number word", `{"name":"f","type":"number"}`, "", str("abc"), "type", Value{}},
		{"number decimalChar", `{"name":"f","type":"number","decimalChar":",","groupChar":"."}`, "", str("1.234,5"), "", Value{Kind: KindNumber, Num: 1234.5}},
		{"number percent", `{"name":"f","type":"number","bareNumber":false}`, "", str("95.5%"), "", Value{Kind: KindNumber, Num: 95.5}},
		{"number bare percent", `{"name":"f","type":"number"}`, "", str("95%"), "type", Value{}},
		{"number json string", `{"name":"f","type":"number"}`, "", str("7"), "", Value{Kind: KindNumber, Num: 7}},
		{"number object", `{"name":"f","type":"number"}`, "", RawCell{Kind: RawComplex, Data: []byte(`{"a":1}`)}, "type", Value{}},
		// missing values
		{"empty is null", `{"name":"f","type":"number"}`, "", str(""), "", Value{}},
		{"NA is null", `{"name":"f","type":"number"}`, `["","NA"]`, str("NA"), "", Value{}},
		{"NA not listed", `{"name":"f","type":"number"}`, "", str("NA"), "type", Value{}},
		{"field override", `{"name":"f","type":"string","missingValues":["-"]}`, `["","NA"]`, str(""), "", Value{Kind: KindString, Str: ""}},
		{"field override null", `{"name":"f","type":"string","missingValues":["-"]}`, `["","NA"]`, str("-"), "", Value{}},
		{"json null", `{"name":"f","type":"number"}`, "", null, "", Value{}},
		// boolean
		{"bool true", `{"name":"f","type":"boolean"}`, "", str("TRUE"), "", Value{Kind: KindBool, Bool: true}},
		{"bool 0", `{"name":"f","type":"boolean"}`, "", str("0"), "", Value{Kind: KindBool}},
		{"bool json", `{"name":"f","type":"boolean"}`, "", boolean(true), "", Value{Kind: KindBool, Bool: true}},
		{"bool json number", `{"name":"f","type":"boolean"}`, "", num("1"), "type", Value{}},
		{"bool custom", `{"name":"f","type":"boolean","trueValues":["yes"],"falseValues":["no"]}`, "", str("no"), "", Value{Kind: KindBool}},
		{"bool custom refuses default", `{"name":"f","type":"boolean","trueValues":["yes"],"falseValues":["no"]}`, "", str("true"), "type", Value{}},
		{"bool maybe", `{"name":"f","type":"boolean"}`, "", str("maybe"), "type", Value{}},
		// datetime
		{"datetime Z", `{"name":"f","type":"datetime"}`, "", str("2020-01-01T00:00:00Z"), "", Value{Kind: KindTime, Num: ms("2020-01-01T00:00:00Z")}},
		{"datetime offset", `{"name":"f","type":"datetime"}`, "", str("2020-01-01T02:00:00.5+02:00"), "", Value{Kind: KindTime, Num: ms("2020-01-01T00:00:00.5Z")}},
		{"datetime no zone", `{"name":"f","type":"datetime"}`, "", str("2020-01-01T00:00:00"), "type", Value{}},
		{"datetime any no zone is UTC", `{"name":"f","type":"datetime","format":"any"}`, "", str("2020-01-01T00:00:00"), "", Value{Kind: KindTime, Num: ms("2020-01-01T00:00:00Z")}},
		{"datetime any space", `{"name":"f","type":"datetime","format":"any"}`, "", str("2013-12-02 21:15:00"), "", Value{Kind: KindTime, Num: ms("2013-12-02T21:15:00Z")}},
		{"datetime any zone", `{"name":"f","type":"datetime","format":"any"}`, "", str("2020-01-01T01:00:00+01:00"), "", Value{Kind: KindTime, Num: ms("2020-01-01T00:00:00Z")}},
		{"datetime any junk", `{"name":"f","type":"datetime","format":"any"}`, "", str("yesterday"), "type", Value{}},
		{"datetime pattern", `{"name":"f","type":"datetime","format":"%d/%m/%Y %H:%M"}`, "", str("31/12/2020 23:59"), "", Value{Kind: KindTime, Num: ms("2020-12-31T23:59:00Z")}},
		{"datetime pattern frac", `{"name":"f","type":"datetime","format":"%Y-%m-%dT%H:%M:%S.%f%z"}`, "", str("2020-12-31T23:59:01.25+0000"), "", Value{Kind: KindTime, Num: ms("2020-12-31T23:59:01.25Z")}},
		{"datetime number", `{"name":"f","type":"datetime"}`, "", num("1577836800000"), "type", Value{}},
		// date
		{"date", `{"name":"f","type":"date"}`, "", str("2020-02-29"), "", Value{Kind: KindTime, Num: ms("2020-02-29T00:00:00Z")}},
		{"date invalid day", `{"name":"f","type":"date"}`, "", str("2021-02-29"), "type", Value{}},
		{"date with time", `{"name":"f","type":"date"}`, "", str("2020-02-29T10:00:00Z"), "type", Value{}},
		{"date pattern", `{"name":"f","type":"date","format":"%d/%m/%Y"}`, "", str("01/02/2020"), "", Value{Kind: KindTime, Num: ms("2020-02-01T00:00:00Z")}},
		{"date any", `{"name":"f","type":"date","format":"any"}`, "", str("2 Jan 2020"), "", Value{Kind: KindTime, Num: ms("2020-01-02T00:00:00Z")}},
		// string and formats
		{"string", `{"name":"f"}`, "", str("héllo"), "", Value{Kind: KindString, Str: "héllo"}},
		{"string from number", `{"name":"f"}`, "", num("3"), "type", Value{}},
		{"email", `{"name":"f","format":"email"}`, "", str("a@b.io"), "", Value{Kind: KindString, Str: "a@b.io"}},
		{"email bad", `{"name":"f","format":"email"}`, "", str("a@@b"), "type", Value{}},
		{"uuid", `{"name":"f","format":"uuid"}`, "", str("123e4567-e89b-12d3-a456-426614174000"), "", Value{Kind: KindString, Str: "123e4567-e89b-12d3-a456-426614174000"}},
		{"uuid bad", `{"name":"f","format":"uuid"}`, "", str("123e4567-e89b-12d3-a456-42661417400g"), "type", Value{}},
		{"uri", `{"name":"f","format":"uri"}`, "", str("https://x.io/a?b"), "", Value{Kind: KindString, Str: "https://x.io/a?b"}},
		{"uri relative", `{"name":"f","format":"uri"}`, "", str("/a/b"), "type", Value{}},
		{"binary", `{"name":"f","format":"binary"}`, "", str("aGVsbG8="), "", Value{Kind: KindString, Str: "aGVsbG8="}},
		{"binary bad", `{"name":"f","format":"binary"}`, "", str("!!!"), "type", Value{}},
		{"invalid utf8", `{"name":"f"}`, "", str("a\xffb"), "encoding", Value{}},
		{"invalid utf8 number", `{"name":"f","type":"number"}`, "", str("1\xff"), "encoding", Value{}},
		// constraints
		{"required empty", `{"name":"f","constraints":{"required":true}}`, "", str(""), "required", Value{}},
		{"required null", `{"name":"f","type":"number","constraints":{"required":true}}`, "", null, "required", Value{}},
		{"required NA", `{"name":"f","type":"number","constraints":{"required":true}}`, `["NA"]`, str("NA"), "required", Value{}},
		{"minimum ok", `{"name":"f","type":"number","constraints":{"minimum":0}}`, "", str("0"), "", Value{Kind: KindNumber, Num: 0}},
		{"minimum", `{"name":"f","type":"number","constraints":{"minimum":0}}`, "", str("-0.1"), "minimum", Value{}},
		{"minimum NaN", `{"name":"f","type":"number","constraints":{"minimum":0}}`, "", str("NaN"), "minimum", Value{}},
		{"maximum equal ok", `{"name":"f","type":"integer","constraints":{"maximum":10}}`, "", num("10"), "", Value{Kind: KindNumber, Num: 10}},
		{"maximum", `{"name":"f","type":"integer","constraints":{"maximum":10}}`, "", num("11"), "maximum", Value{}},
		{"exclusiveMinimum equal", `{"name":"f","type":"number","constraints":{"exclusiveMinimum":1}}`, "", num("1"), "exclusiveMinimum", Value{}},
		{"exclusiveMaximum equal", `{"name":"f","type":"number","constraints":{"exclusiveMaximum":1}}`, "", num("1.0"), "exclusiveMaximum", Value{}},
		{"exclusiveMaximum below", `{"name":"f","type":"number","constraints":{"exclusiveMaximum":1}}`, "", num("0.999"), "", Value{Kind: KindNumber, Num: 0.999}},
		{"date minimum", `{"name":"f","type":"date","constraints":{"minimum":"2020-01-01"}}`, "", str("2019-12-31"), "minimum", Value{}},
		{"date pattern minimum", `{"name":"f","type":"date","format":"%d/%m/%Y","constraints":{"minimum":"01/01/2020"}}`, "", str("02/01/2020"), "", Value{Kind: KindTime, Num: ms("2020-01-02T00:00:00Z")}},
		{"datetime maximum", `{"name":"f","type":"datetime","constraints":{"maximum":"2020-01-01T00:00:00Z"}}`, "", str("2020-01-01T01:00:00+02:00"), "", Value{Kind: KindTime, Num: ms("2019-12-31T23:00:00Z")}},
		{"minLength runes", `{"name":"f","constraints":{"minLength":5}}`, "", str("héllo"), "", Value{Kind: KindString, Str: "héllo"}},
		{"minLength", `{"name":"f","constraints":{"minLength":6}}`, "", str("héllo"), "minLength", Value{}},
		{"maxLength", `{"name":"f","constraints":{"maxLength":4}}`, "", str("héllo"), "maxLength", Value{}},
		{"pattern ok", `{"name":"f","constraints":{"pattern":"[a-z]+"}}`, "", str("abc"), "", Value{Kind: KindString, Str: "abc"}},
		{"pattern anchored end", `{"name":"f","constraints":{"pattern":"[a-z]+"}}`, "", str("abc1"), "pattern", Value{}},
		{"pattern anchored start", `{"name":"f","constraints":{"pattern":"[a-z]+"}}`, "", str("1abc"), "pattern", Value{}},
		{"pattern alternation anchored", `{"name":"f","constraints":{"pattern":"a|b"}}`, "", str("ab"), "pattern", Value{}},
		{"enum number typed", `{"name":"f","type":"number","constraints":{"enum":[1,2]}}`, "", str("1.0"), "", Value{Kind: KindNumber, Num: 1}},
		{"enum number json", `{"name":"f","type":"number","constraints":{"enum":[1,"2"]}}`, "", num("2e0"), "", Value{Kind: KindNumber, Num: 2}},
		{"enum number miss", `{"name":"f","type":"number","constraints":{"enum":[1,2]}}`, "", num("3"), "enum", Value{}},
		{"enum string", `{"name":"f","constraints":{"enum":["a","b"]}}`, "", str("B"), "enum", Value{}},
		{"enum bool", `{"name":"f","type":"boolean","constraints":{"enum":[true]}}`, "", str("1"), "", Value{Kind: KindBool, Bool: true}},
		{"enum date", `{"name":"f","type":"date","constraints":{"enum":["2020-01-01"]}}`, "", str("2020-01-02"), "enum", Value{}},
		{"absent feature", `{"name":"f"}`, "", RawCell{}, "missing_column", Value{}},
		{"absent label", `{"name":"f","x-driftline":{"role":"label"}}`, "", RawCell{}, "", Value{}},
		{"absent required label", `{"name":"f","constraints":{"required":true},"x-driftline":{"role":"label"}}`, "", RawCell{}, "required", Value{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			doc := `{"fields":[` + tc.field + `]`
			if tc.missing != "" {
				doc += `,"missingValues":` + tc.missing
			}
			s := mustParse(t, doc+"}")
			v := NewValidator(s, Options{})
			row := &RawRow{Num: 7, Cells: []RawCell{tc.cell}}
			out := make([]Value, 1)
			viol, ok := v.Validate(row, out, nil)
			if tc.rule == "" {
				if !ok || len(viol) != 0 {
					t.Fatalf("want valid, got %+v", viol)
				}
				got := out[0]
				if got.Kind != tc.want.Kind || got.Str != tc.want.Str || got.Bool != tc.want.Bool ||
					!(got.Num == tc.want.Num || (math.IsNaN(got.Num) && math.IsNaN(tc.want.Num))) {
					t.Errorf("value = %+v, want %+v", got, tc.want)
				}
				return
			}
			if ok || len(viol) != 1 {
				t.Fatalf("want one %q violation, got ok=%v %+v", tc.rule, ok, viol)
			}
			if viol[0].Rule != tc.rule || viol[0].Field != "f" || viol[0].Row != 7 {
				t.Errorf("violation = %+v, want rule %q on f row 7", viol[0], tc.rule)
			}
			if tc.rule == "type" && viol[0].Value != string(tc.cell.Data) {
				t.Errorf("violation value = %q, want %q", viol[0].Value, tc.cell.Data)
			}
			if tc.rule == "type" && !out[0].IsNull() {
				t.Errorf("a type violation must leave a null, got %+v", out[0])
			}
		})
	}
}

func TestValidateUnique(t *testing.T) {
	s := mustParse(t, `{"fields":[
		{"name":"id","type":"number","constraints":{"unique":true}},
		{"name":"site"},{"name":"n","type":"integer"}],
		"primaryKey":["site","n"]}`)
	v := NewValidator(s, Options{})
	out := make([]Value, 3)
	rows := []struct {
		cells []RawCell
		rules []string
	}{
		{[]RawCell{str("3"), str("a"), str("1")}, nil},
		{[]RawCell{num("3.0"), str("a"), str("2")}, []string{"unique"}},
		{[]RawCell{str(""), str("a"), str("3")}, nil}, // nulls are not checked for uniqueness
		{[]RawCell{str(""), str("b"), str("1")}, nil},
		{[]RawCell{str("4"), str("b"), num("1.0")}, []string{"primaryKey"}},
		{[]RawCell{str("5"), str(""), str("1")}, []string{"required"}},
		{[]RawCell{str("-0"), str("ab"), str("1")}, nil},
		{[]RawCell{str("0"), str("a"), str("9")}, []string{"unique"}},
	}
	for i, r := range rows {
		viol, _ := v.Validate(&RawRow{Num: int64(i + 1), Cells: r.cells}, out, nil)
		var rules []string
		for _, x := range viol {
			rules = append(rules, x.Rule)
		}
		if !slices.Equal(rules, r.rules) {
			t.Errorf("row %d: rules %q, want %q (%+v)", i+1, rules, r.rules, viol)
		}
	}
	v.Reset()
	if viol, ok := v.Validate(&RawRow{Num: 9, Cells: rows[0].cells}, out, nil); !ok {
		t.Errorf("after Reset the first row must pass again: %+v", viol)
	}
}

func TestValidateUniqueBounded(t *testing.T) {
	s := mustParse(t, `{"fields":[{"name":"id","type":"integer","constraints":{"unique":true}}]}`)
	v := NewValidator(s, Options{MaxKeys: 100})
	out := make([]Value, 1)
	for i := range 1000 {
		cell := str(strings.Repeat("1", 1) + string(rune('0'+i%10)) + string(rune('0'+i/10%10)) + string(rune('0'+i/100)))
		if viol, ok := v.Validate(&RawRow{Cells: []RawCell{cell}}, out, nil); !ok {
			t.Fatalf("row %d: %+v", i, viol)
		}
		if n := len(v.sets[0].seen); n > 100 {
			t.Fatalf("set grew to %d keys, cap 100", n)
		}
	}
}

func TestValidateRowLevel(t *testing.T) {
	s := mustParse(t, `{"fields":[{"name":"a","type":"number"},{"name":"b"}]}`)
	v := NewValidator(s, Options{})
	out := []Value{{Kind: KindNumber, Num: 9}, {Kind: KindString, Str: "old"}}

	viol, ok := v.Validate(&RawRow{Num: 3, ParseErr: "unexpected end", Text: []byte(`{"a":`)}, out, nil)
	if ok || len(viol) != 1 || viol[0].Rule != RuleParse || viol[0].Value != `{"a":` || viol[0].Message != "unexpected end" {
		t.Errorf("parse row: %+v", viol)
	}
	if !out[0].IsNull() || !out[1].IsNull() {
		t.Errorf("a parse failure must null the row: %+v", out)
	}

	long := strings.Repeat("é", 300)
	viol, _ = v.Validate(&RawRow{Num: 4, Cells: []RawCell{str("1"), str("x")},
		Extra: []RawExtra{{Name: []byte("c"), Value: []byte(long)}}}, out, nil)
	if len(viol) != 1 || viol[0].Rule != RuleExtraColumn || viol[0].Field != "c" {
		t.Fatalf("extra column: %+v", viol)
	}
	if len(viol[0].Value) > MaxViolationValue || !strings.HasPrefix(long, viol[0].Value) {
		t.Errorf("value not truncated at a rune boundary: %d bytes", len(viol[0].Value))
	}

	viol, _ = v.Validate(&RawRow{Num: 5, Cells: []RawCell{str("x")}}, out, nil)
	if len(viol) != 2 || viol[0].Rule != RuleType || viol[1].Rule != RuleMissingColumn || viol[1].Field != "b" {
		t.Errorf("short row: %+v", viol)
	}
}

func TestPasses(t *testing.T) {
	s := mustParse(t, `{"fields":[{"name":"a"}],"x-driftline":{"mostly":0.9}}`)
	for _, tc := range []struct {
		valid, total int64
		want         bool
	}{{0, 0, true}, {9, 10, true}, {8, 10, false}, {90, 100, true}, {89, 100, false}} {
		if got := s.Passes(tc.valid, tc.total); got != tc.want {
			t.Errorf("Passes(%d, %d) = %v", tc.valid, tc.total, got)
		}
	}
}
