package contract

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strings"
)

// Parse reads a data contract: a Frictionless Table Schema JSON object with Driftline's
// "x-driftline" extensions. A refused contract yields a *ContractError that lists every problem
// found, each with its JSON path; Parse never stops at the first one.
func Parse(data []byte) (*Schema, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		return nil, &ContractError{Problems: []Problem{{Message: "not valid JSON: " + err.Error()}}}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, &ContractError{Problems: []Problem{{Message: "not valid JSON: data after the top-level object"}}}
	}
	p := &parser{}
	s := p.schema(doc)
	if len(p.probs) > 0 {
		return nil, &ContractError{Problems: p.probs}
	}
	return s, nil
}

// parser walks the decoded document and collects problems instead of stopping at the first.
type parser struct {
	probs []Problem
}

func (p *parser) add(path, format string, args ...any) {
	p.probs = append(p.probs, Problem{Path: path, Message: fmt.Sprintf(format, args...)})
}

func join(base, key string) string {
	if base == "" {
		return key
	}
	return base + "." + key
}

// Keys each object may hold. Keys starting with "x-" (other vendors' extensions) are ignored;
// any other key is refused, so that a typo ("constraint", "maximun") never passes silently.
var (
	schemaKeys     = []string{"$schema", "fields", "missingValues", "primaryKey", "name", "title", "description", "x-driftline"}
	fieldKeys      = []string{"name", "title", "description", "type", "format", "constraints", "missingValues", "trueValues", "falseValues", "decimalChar", "groupChar", "bareNumber", "example", "rdfType", "x-driftline"}
	constraintKeys = []string{"required", "unique", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength", "pattern", "enum"}
	fieldExtKeys   = []string{"role", "drift"}
	driftKeys      = []string{"method", "threshold", "calibrate"}
	schemaExtKeys  = []string{"mostly", "window", "drift", "task", "metric", "collect"}
	windowKeys     = []string{"rows", "seconds"}
	schemaDrift    = []string{"calibrate", "factor"}
	types          = []string{TypeString, TypeNumber, TypeInteger, TypeBoolean, TypeDatetime, TypeDate}
	roles          = []Role{RoleFeature, RolePrediction, RoleLabel}
	methods        = []string{MethodKS, MethodWasserstein, MethodPSI, MethodChiSquare, MethodJensenShannon}
)

// object checks that v is an object whose keys are all in allowed.
func (p *parser) object(v any, path string, allowed []string, vendorOK bool) (map[string]any, bool) {
	m, ok := v.(map[string]any)
	if !ok {
		p.add(path, "must be an object, got %s", jsonKind(v))
		return nil, false
	}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if slices.Contains(allowed, k) || (vendorOK && strings.HasPrefix(k, "x-") && k != "x-driftline") {
			continue
		}
		p.add(join(path, k), "unknown key %q (allowed: %s)", k, strings.Join(allowed, ", "))
	}
	return m, true
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case json.Number:
		return "a number"
	case string:
		return "a string"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

func (p *parser) str(v any, path string) (string, bool) {
	s, ok := v.(string)
	if !ok {
		p.add(path, "must be a string, got %s", jsonKind(v))
	}
	return s, ok
}

func (p *parser) boolean(v any, path string) bool {
	b, ok := v.(bool)
	if !ok {
		p.add(path, "must be true or false, got %s", jsonKind(v))
	}
	return b
}

func (p *parser) strList(v any, path string) ([]string, bool) {
	a, ok := v.([]any)
	if !ok {
		p.add(path, "must be an array of strings, got %s", jsonKind(v))
		return nil, false
	}
	out := make([]string, 0, len(a))
	good := true
	for i, e := range a {
		s, ok := p.str(e, fmt.Sprintf("%s[%d]", path, i))
		good = good && ok
		out = append(out, s)
	}
	return out, good
}

func (p *parser) number(v any, path string) (float64, bool) {
	n, ok := v.(json.Number)
	if !ok {
		p.add(path, "must be a number, got %s", jsonKind(v))
		return 0, false
	}
	x, err := n.Float64()
	if err != nil || math.IsInf(x, 0) {
		p.add(path, "number %s is out of range", n)
		return 0, false
	}
	return x, true
}

// integer reads a whole number of at least min.
func (p *parser) integer(v any, path string, min int) (int, bool) {
	n, ok := v.(json.Number)
	if !ok {
		p.add(path, "must be an integer, got %s", jsonKind(v))
		return 0, false
	}
	x, err := n.Int64()
	if err != nil || x > math.MaxInt32 {
		p.add(path, "must be an integer up to %d, got %s", math.MaxInt32, n)
		return 0, false
	}
	if x < int64(min) {
		p.add(path, "must be at least %d, got %d", min, x)
		return 0, false
	}
	return int(x), true
}

func (p *parser) schema(doc any) *Schema {
	m, ok := p.object(doc, "", schemaKeys, true)
	if !ok {
		return nil
	}
	s := &Schema{
		MissingValues: []string{""},
		Driftline:     Extension{Mostly: 1, Drift: SchemaDrift{Factor: 3}},
		index:         map[string]int{},
	}
	for _, k := range []string{"$schema", "name", "title", "description"} {
		if v, ok := m[k]; ok {
			p.str(v, k)
		}
	}
	if v, ok := m["missingValues"]; ok {
		if mv, ok := p.strList(v, "missingValues"); ok {
			s.MissingValues = mv
		}
	}
	p.fields(m, s)
	if v, ok := m["primaryKey"]; ok {
		p.primaryKey(v, s)
	}
	if v, ok := m["x-driftline"]; ok {
		p.schemaExt(v, s)
	}
	for i := range s.Fields {
		f := &s.Fields[i]
		f.c.missing = s.MissingValues
		if f.MissingValues != nil {
			f.c.missing = f.MissingValues
		}
	}
	return s
}

func (p *parser) fields(m map[string]any, s *Schema) {
	v, ok := m["fields"]
	if !ok {
		p.add("fields", "required: a contract lists its fields")
		return
	}
	arr, ok := v.([]any)
	if !ok {
		p.add("fields", "must be an array of field objects, got %s", jsonKind(v))
		return
	}
	if len(arr) == 0 {
		p.add("fields", "must list at least one field")
	}
	s.Fields = make([]Field, len(arr))
	for i, fv := range arr {
		path := fmt.Sprintf("fields[%d]", i)
		p.field(fv, path, &s.Fields[i])
		name := s.Fields[i].Name
		if name == "" {
			continue
		}
		if j, dup := s.index[name]; dup {
			p.add(path+".name", "duplicate field name %q (also fields[%d])", name, j)
			continue
		}
		s.index[name] = i
	}
}

func (p *parser) primaryKey(v any, s *Schema) {
	var names []string
	switch x := v.(type) {
	case string:
		names = []string{x}
	case []any:
		var ok bool
		if names, ok = p.strList(v, "primaryKey"); !ok {
			return
		}
		if len(names) == 0 {
			p.add("primaryKey", "must name at least one field")
		}
	default:
		p.add("primaryKey", "must be a field name or an array of field names, got %s", jsonKind(v))
		return
	}
	s.PrimaryKey = names
	for k, n := range names {
		i, ok := s.index[n]
		if !ok {
			p.add(fmt.Sprintf("primaryKey[%d]", k), "names no field: %q", n)
			continue
		}
		if slices.Contains(s.pk, i) {
			p.add(fmt.Sprintf("primaryKey[%d]", k), "field %q is named twice", n)
			continue
		}
		s.pk = append(s.pk, i)
		s.Fields[i].c.required = true
	}
	if len(s.pk) == 1 {
		s.Fields[s.pk[0]].c.unique = true
	}
}

func (p *parser) schemaExt(v any, s *Schema) {
	const path = "x-driftline"
	m, ok := p.object(v, path, schemaExtKeys, false)
	if !ok {
		return
	}
	if v, ok := m["mostly"]; ok {
		if x, ok := p.number(v, path+".mostly"); ok {
			if x < 0 || x > 1 {
				p.add(path+".mostly", "must be a share between 0 and 1, got %v", x)
			} else {
				s.Driftline.Mostly = x
			}
		}
	}
	if v, ok := m["window"]; ok {
		if w, ok := p.object(v, path+".window", windowKeys, false); ok {
			if r, ok := w["rows"]; ok {
				s.Driftline.Window.Rows, _ = p.integer(r, path+".window.rows", 1)
			}
			if sec, ok := w["seconds"]; ok {
				if x, ok := p.number(sec, path+".window.seconds"); ok {
					if x <= 0 {
						p.add(path+".window.seconds", "must be positive, got %v", x)
					} else {
						s.Driftline.Window.Seconds = x
					}
				}
			}
		}
	}
	if v, ok := m["task"]; ok {
		if t, ok := p.str(v, path+".task"); ok {
			if t != TaskClassification && t != TaskRegression {
				p.add(path+".task", "unknown task %q (classification or regression)", t)
			} else {
				s.Driftline.Task = t
			}
		}
	}
	if v, ok := m["metric"]; ok {
		if t, ok := p.str(v, path+".metric"); ok {
			if !slices.Contains([]string{MetricAccuracy, MetricF1, MetricMAE, MetricRMSE}, t) {
				p.add(path+".metric", "unknown metric %q (accuracy, f1, mae or rmse)", t)
			} else {
				s.Driftline.Metric = t
			}
		}
	}
	if v, ok := m["collect"]; ok {
		if b, ok := v.(bool); ok {
			s.Driftline.Collect = b
		} else {
			p.add(path+".collect", "must be true or false")
		}
	}
	if v, ok := m["drift"]; ok {
		if d, ok := p.object(v, path+".drift", schemaDrift, false); ok {
			if c, ok := d["calibrate"]; ok {
				s.Driftline.Drift.Calibrate, _ = p.integer(c, path+".drift.calibrate", 2)
			}
			if f, ok := d["factor"]; ok {
				if x, ok := p.number(f, path+".drift.factor"); ok {
					if x <= 0 {
						p.add(path+".drift.factor", "must be positive, got %v", x)
					} else {
						s.Driftline.Drift.Factor = x
					}
				}
			}
		}
	}
}
