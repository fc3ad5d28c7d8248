package contract

import (
	"errors"
	"os"
	"reflect"
	"slices"
	"testing"
)

func mustParse(t testing.TB, doc string) *Schema {
	t.Helper()
	s, err := Parse([]byte(doc))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return s
}

func TestParseFull(t *testing.T) {
	data, err := os.ReadFile("testdata/full.json")
	if err != nil {
		t.Fatal(err)
	}
	s := mustParse(t, string(data))
	if got := len(s.Fields); got != 9 {
		t.Fatalf("fields = %d, want 9", got)
	}
	if i := s.Index("temp"); i != 3 {
		t.Errorf("Index(temp) = %d, want 3", i)
	}
	if i := s.Index("nope"); i != -1 {
		t.Errorf("Index(nope) = %d, want -1", i)
	}
	if !slices.Equal(s.PrimaryKey, []string{"site", "ts"}) || !slices.Equal(s.pk, []int{0, 1}) {
		t.Errorf("primary key = %v %v", s.PrimaryKey, s.pk)
	}
	if !s.Fields[0].c.required || !s.Fields[1].c.required || s.Fields[0].c.unique {
		t.Errorf("composite key fields: want required and not unique each")
	}
	temp := s.Fields[3]
	if temp.Role != RoleFeature || temp.Drift == nil || temp.Drift.Method != MethodWasserstein ||
		*temp.Drift.Threshold != 0.2 || temp.Drift.Calibrate != 500 {
		t.Errorf("temp = %+v drift %+v", temp, temp.Drift)
	}
	if string(temp.Constraints.Minimum) != "-40" || temp.c.bounds[3].Num != 125 {
		t.Errorf("temp bounds = %s %v", temp.Constraints.Minimum, temp.c.bounds[3])
	}
	if s.Fields[7].Role != RolePrediction || s.Fields[8].Role != RoleLabel {
		t.Errorf("roles = %s %s", s.Fields[7].Role, s.Fields[8].Role)
	}
	if s.Fields[5].MissingValues == nil || len(s.Fields[5].c.missing) != 0 {
		t.Errorf("ok missingValues override lost: %v", s.Fields[5].c.missing)
	}
	if !slices.Equal(s.Fields[4].c.missing, []string{"", "NA"}) {
		t.Errorf("count missing values = %v", s.Fields[4].c.missing)
	}
	want := Extension{Mostly: 0.95, Window: Window{Rows: 1000, Seconds: 30}, Drift: SchemaDrift{Calibrate: 1000, Factor: 2.5}}
	if s.Driftline != want {
		t.Errorf("x-driftline = %+v, want %+v", s.Driftline, want)
	}
}

func TestParseDefaults(t *testing.T) {
	s := mustParse(t, `{"fields":[{"name":"a"},{"name":"b","type":"boolean"},{"name":"c","type":"number"}]}`)
	a, b, c := s.Fields[0], s.Fields[1], s.Fields[2]
	if a.Type != TypeString || a.Format != "default" || a.Role != RoleFeature || a.Drift != nil {
		t.Errorf("a = %+v", a)
	}
	if a.Constraints.MinLength != -1 || a.Constraints.MaxLength != -1 {
		t.Errorf("length defaults = %d %d", a.Constraints.MinLength, a.Constraints.MaxLength)
	}
	if !slices.Equal(b.TrueValues, defaultTrueValues) || !slices.Equal(b.FalseValues, defaultFalseValues) {
		t.Errorf("boolean defaults = %v %v", b.TrueValues, b.FalseValues)
	}
	if c.DecimalChar != "." || !c.BareNumber {
		t.Errorf("number defaults = %q %v", c.DecimalChar, c.BareNumber)
	}
	if !slices.Equal(s.MissingValues, []string{""}) {
		t.Errorf("missingValues default = %q", s.MissingValues)
	}
	if s.Driftline != (Extension{Mostly: 1, Drift: SchemaDrift{Factor: 3}}) {
		t.Errorf("x-driftline defaults = %+v", s.Driftline)
	}
	pk := mustParse(t, `{"fields":[{"name":"id","type":"integer"}],"primaryKey":"id"}`)
	if !pk.Fields[0].c.required || !pk.Fields[0].c.unique {
		t.Errorf("one-field primary key must imply required and unique")
	}
}

// TestParseProblems checks that a refused contract lists every problem with its path.
func TestParseProblems(t *testing.T) {
	cases := []struct {
		name  string
		doc   string
		paths []string
	}{
		{"not json", `{"fields": [`, []string{""}},
		{"trailing data", `{"fields":[{"name":"a"}]} {}`, []string{""}},
		{"not an object", `[1,2]`, []string{""}},
		{"no fields", `{}`, []string{"fields"}},
		{"empty fields", `{"fields":[]}`, []string{"fields"}},
		{"fields not array", `{"fields":{}}`, []string{"fields"}},
		{"unknown schema key", `{"fields":[{"name":"a"}],"foreignKeys":[]}`, []string{"foreignKeys"}},
		{"field not object", `{"fields":[3]}`, []string{"fields[0]"}},
		{"no name", `{"fields":[{"type":"string"}]}`, []string{"fields[0].name"}},
		{"empty name", `{"fields":[{"name":""}]}`, []string{"fields[0].name"}},
		{"duplicate name", `{"fields":[{"name":"a"},{"name":"a"}]}`, []string{"fields[1].name"}},
		{"unknown type", `{"fields":[{"name":"a","type":"geopoint"}]}`, []string{"fields[0].type"}},
		{"type not string", `{"fields":[{"name":"a","type":1}]}`, []string{"fields[0].type"}},
		{"unknown field key", `{"fields":[{"name":"a","constraint":{}}]}`, []string{"fields[0].constraint"}},
		{"bad string format", `{"fields":[{"name":"a","format":"ipv4"}]}`, []string{"fields[0].format"}},
		{"number format", `{"fields":[{"name":"a","type":"number","format":"currency"}]}`, []string{"fields[0].format"}},
		{"bad date format", `{"fields":[{"name":"a","type":"date","format":"%Q"}]}`, []string{"fields[0].format"}},
		{"date format without directive", `{"fields":[{"name":"a","type":"date","format":"yyyy"}]}`, []string{"fields[0].format"}},
		{"bad regex", `{"fields":[{"name":"a","constraints":{"pattern":"(["}}]}`, []string{"fields[0].constraints.pattern"}},
		{"pattern escaping its anchors", `{"fields":[{"name":"a","constraints":{"pattern":"a)|(?:b"}}]}`, []string{"fields[0].constraints.pattern"}},
		{"unknown constraint", `{"fields":[{"name":"a","constraints":{"maximun":3}}]}`, []string{"fields[0].constraints.maximun"}},
		{"min > max", `{"fields":[{"name":"a","type":"number","constraints":{"minimum":5,"maximum":1}}]}`, []string{"fields[0].constraints.minimum"}},
		{"exclusive empty", `{"fields":[{"name":"a","type":"integer","constraints":{"exclusiveMinimum":1,"exclusiveMaximum":1}}]}`, []string{"fields[0].constraints.exclusiveMinimum"}},
		{"minLength > maxLength", `{"fields":[{"name":"a","constraints":{"minLength":5,"maxLength":1}}]}`, []string{"fields[0].constraints.minLength"}},
		{"negative length", `{"fields":[{"name":"a","constraints":{"minLength":-1}}]}`, []string{"fields[0].constraints.minLength"}},
		{"length on number", `{"fields":[{"name":"a","type":"number","constraints":{"maxLength":3}}]}`, []string{"fields[0].constraints.maxLength"}},
		{"bound on string", `{"fields":[{"name":"a","constraints":{"minimum":3}}]}`, []string{"fields[0].constraints.minimum"}},
		{"bound wrong type", `{"fields":[{"name":"a","type":"integer","constraints":{"maximum":"x"}}]}`, []string{"fields[0].constraints.maximum"}},
		{"bound not integer", `{"fields":[{"name":"a","type":"integer","constraints":{"maximum":2.5}}]}`, []string{"fields[0].constraints.maximum"}},
		{"date bound", `{"fields":[{"name":"a","type":"date","constraints":{"minimum":"2020-13-01"}}]}`, []string{"fields[0].constraints.minimum"}},
		{"required not bool", `{"fields":[{"name":"a","constraints":{"required":"yes"}}]}`, []string{"fields[0].constraints.required"}},
		{"empty enum", `{"fields":[{"name":"a","constraints":{"enum":[]}}]}`, []string{"fields[0].constraints.enum"}},
		{"enum bad member", `{"fields":[{"name":"a","type":"number","constraints":{"enum":[1,"x",null]}}]}`, []string{"fields[0].constraints.enum[1]", "fields[0].constraints.enum[2]"}},
		{"trueValues on string", `{"fields":[{"name":"a","trueValues":["y"]}]}`, []string{"fields[0].trueValues"}},
		{"true and false overlap", `{"fields":[{"name":"a","type":"boolean","trueValues":["y"],"falseValues":["y"]}]}`, []string{"fields[0].falseValues"}},
		{"groupChar equals decimalChar", `{"fields":[{"name":"a","type":"number","decimalChar":",","groupChar":","}]}`, []string{"fields[0].groupChar"}},
		{"missingValues not strings", `{"fields":[{"name":"a"}],"missingValues":["", 0]}`, []string{"missingValues[1]"}},
		{"bad role", `{"fields":[{"name":"a","x-driftline":{"role":"target"}}]}`, []string{"fields[0].x-driftline.role"}},
		{"unknown x-driftline field key", `{"fields":[{"name":"a","x-driftline":{"weight":1}}]}`, []string{"fields[0].x-driftline.weight"}},
		{"unknown drift method", `{"fields":[{"name":"a","type":"number","x-driftline":{"drift":{"method":"kl"}}}]}`, []string{"fields[0].x-driftline.drift.method"}},
		{"numeric method on string", `{"fields":[{"name":"a","x-driftline":{"drift":{"method":"ks"}}}]}`, []string{"fields[0].x-driftline.drift.method"}},
		{"p-value threshold", `{"fields":[{"name":"a","type":"number","x-driftline":{"drift":{"method":"ks","threshold":5}}}]}`, []string{"fields[0].x-driftline.drift.threshold"}},
		{"negative threshold", `{"fields":[{"name":"a","type":"number","x-driftline":{"drift":{"threshold":-1}}}]}`, []string{"fields[0].x-driftline.drift.threshold"}},
		{"bad calibrate", `{"fields":[{"name":"a","type":"number","x-driftline":{"drift":{"calibrate":1}}}]}`, []string{"fields[0].x-driftline.drift.calibrate"}},
		{"mostly out of range", `{"fields":[{"name":"a"}],"x-driftline":{"mostly":1.5}}`, []string{"x-driftline.mostly"}},
		{"unknown x-driftline key", `{"fields":[{"name":"a"}],"x-driftline":{"mostly":1,"windows":{}}}`, []string{"x-driftline.windows"}},
		{"bad window", `{"fields":[{"name":"a"}],"x-driftline":{"window":{"rows":0,"seconds":-1,"minutes":1}}}`, []string{"x-driftline.window.minutes", "x-driftline.window.rows", "x-driftline.window.seconds"}},
		{"bad schema drift", `{"fields":[{"name":"a"}],"x-driftline":{"drift":{"calibrate":"x","factor":0}}}`, []string{"x-driftline.drift.calibrate", "x-driftline.drift.factor"}},
		{"primary key unknown", `{"fields":[{"name":"a"}],"primaryKey":["a","b"]}`, []string{"primaryKey[1]"}},
		{"primary key wrong type", `{"fields":[{"name":"a"}],"primaryKey":3}`, []string{"primaryKey"}},
		{"bad type and constraint", `{"fields":[{"name":"a","type":"int","constraints":{"max":1}}]}`, []string{"fields[0].type", "fields[0].constraints.max"}},
		{"many problems at once", `{"fields":[{"name":"a","type":"int"},{"name":"b","constraints":{"pattern":"(","foo":1}},{"name":"c","type":"number","constraints":{"minimum":3,"maximum":2},"x-driftline":{"role":"x"}}]}`,
			[]string{"fields[0].type", "fields[1].constraints.foo", "fields[1].constraints.pattern", "fields[2].constraints.minimum", "fields[2].x-driftline.role"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Parse([]byte(tc.doc))
			if err == nil {
				t.Fatalf("Parse accepted %s: %+v", tc.doc, s)
			}
			var ce *ContractError
			if !errors.As(err, &ce) || !errors.Is(err, ErrInvalidContract) {
				t.Fatalf("error %T %v is not a *ContractError wrapping ErrInvalidContract", err, err)
			}
			var paths []string
			for _, p := range ce.Problems {
				paths = append(paths, p.Path)
				if p.Message == "" {
					t.Errorf("problem at %q has no message", p.Path)
				}
			}
			if !slices.Equal(paths, tc.paths) {
				t.Errorf("problem paths = %q, want %q\n%v", paths, tc.paths, err)
			}
			t.Log(err)
		})
	}
}

func TestDigestCanonical(t *testing.T) {
	a := mustParse(t, `{"fields":[{"name":"x","type":"number","constraints":{"minimum":0}}],"missingValues":[""]}`)
	b := mustParse(t, `{
		"missingValues": [""],
		"fields": [{"constraints": {"minimum": 0}, "type": "number", "name": "x", "format": "default",
		            "x-driftline": {"role": "feature"}}],
		"x-driftline": {"mostly": 1}
	}`)
	c := mustParse(t, `{"fields":[{"name":"x","type":"number","constraints":{"minimum":1}}]}`)
	if a.Digest() != b.Digest() {
		t.Errorf("equal contracts differ: %s %s", a.Digest(), b.Digest())
	}
	if a.Digest() == c.Digest() {
		t.Errorf("different contracts share digest %s", a.Digest())
	}
	data, err := os.ReadFile("testdata/full.json")
	if err != nil {
		t.Fatal(err)
	}
	full := mustParse(t, string(data))
	out, err := full.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	again := mustParse(t, string(out))
	if again.Digest() != full.Digest() {
		t.Errorf("round trip changed digest:\n%s", out)
	}
	if !reflect.DeepEqual(again.Fields[3].Constraints, full.Fields[3].Constraints) {
		t.Errorf("round trip changed constraints: %+v vs %+v", again.Fields[3].Constraints, full.Fields[3].Constraints)
	}
}
