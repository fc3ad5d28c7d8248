package contract

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// stringFormats are the Table Schema formats of string fields.
var stringFormats = []string{"default", "email", "uri", "uuid", "binary"}

func (p *parser) field(v any, path string, f *Field) {
	*f = Field{
		Type: TypeString, Format: "default", Role: RoleFeature, BareNumber: true,
		Constraints: Constraints{MinLength: -1, MaxLength: -1},
	}
	m, ok := p.object(v, path, fieldKeys, true)
	if !ok {
		return
	}
	if v, ok := m["name"]; !ok {
		p.add(path+".name", "required")
	} else if name, ok := p.str(v, path+".name"); ok {
		if name == "" {
			p.add(path+".name", "must not be empty")
		}
		f.Name = name
	}
	if v, ok := m["title"]; ok {
		f.Title, _ = p.str(v, path+".title")
	}
	if v, ok := m["description"]; ok {
		f.Description, _ = p.str(v, path+".description")
	}
	if v, ok := m["rdfType"]; ok {
		p.str(v, path+".rdfType")
	}
	typeOK := true
	if v, ok := m["type"]; ok {
		t, ok := p.str(v, path+".type")
		switch {
		case !ok:
			typeOK = false
		case !slices.Contains(types, t):
			p.add(path+".type", "unknown type %q (supported: %s)", t, strings.Join(types, ", "))
			typeOK = false
		default:
			f.Type = t
		}
	}
	if v, ok := m["format"]; ok {
		if fm, ok := p.str(v, path+".format"); ok && typeOK {
			f.Format = fm
		}
	}
	if typeOK {
		p.format(f, path+".format")
	}
	if v, ok := m["missingValues"]; ok {
		if mv, ok := p.strList(v, path+".missingValues"); ok {
			f.MissingValues = mv
		}
	}
	if typeOK {
		p.typeOptions(m, f, path)
	}
	if v, ok := m["constraints"]; ok {
		if typeOK {
			p.constraints(v, f, path+".constraints")
		} else {
			// Without a type the values cannot be checked, but unknown keys can.
			p.object(v, path+".constraints", constraintKeys, false)
		}
	}
	if v, ok := m["x-driftline"]; ok {
		p.fieldExt(v, f, path+".x-driftline", typeOK)
	}
	f.c.required = f.c.required || f.Constraints.Required
	f.c.unique = f.c.unique || f.Constraints.Unique
}

// format checks the field's format against its type and compiles date and time formats.
func (p *parser) format(f *Field, path string) {
	switch f.Type {
	case TypeString:
		if f.Format == "" {
			f.Format = "default"
		}
		if !slices.Contains(stringFormats, f.Format) {
			p.add(path, "unknown string format %q (supported: %s)", f.Format, strings.Join(stringFormats, ", "))
		}
	case TypeDate, TypeDatetime:
		if f.Format == "" {
			f.Format = "default"
		}
		tf, err := newTimeFormat(f.Type, f.Format)
		if err != nil {
			p.add(path, "%v", err)
		}
		f.c.timeFmt = tf
	default:
		if f.Format != "default" && f.Format != "" {
			p.add(path, "type %s has no format %q (only \"default\")", f.Type, f.Format)
		}
		f.Format = "default"
	}
}

// typeOptions reads trueValues, falseValues, decimalChar, groupChar and bareNumber.
func (p *parser) typeOptions(m map[string]any, f *Field, path string) {
	only := func(key string, types ...string) bool {
		if _, ok := m[key]; !ok {
			return false
		}
		if !slices.Contains(types, f.Type) {
			p.add(path+"."+key, "applies only to %s fields, not %s", strings.Join(types, " and "), f.Type)
			return false
		}
		return true
	}
	if f.Type == TypeBoolean {
		f.TrueValues, f.FalseValues = defaultTrueValues, defaultFalseValues
	}
	if only("trueValues", TypeBoolean) {
		if tv, ok := p.strList(m["trueValues"], path+".trueValues"); ok {
			f.TrueValues = tv
		}
	}
	if only("falseValues", TypeBoolean) {
		if fv, ok := p.strList(m["falseValues"], path+".falseValues"); ok {
			f.FalseValues = fv
		}
	}
	for _, t := range f.TrueValues {
		if slices.Contains(f.FalseValues, t) {
			p.add(path+".falseValues", "%q is both a true and a false value", t)
		}
	}
	f.c.trueV, f.c.falseV = f.TrueValues, f.FalseValues
	if f.Type == TypeNumber {
		f.DecimalChar = "."
	}
	if only("decimalChar", TypeNumber) {
		if s, ok := p.str(m["decimalChar"], path+".decimalChar"); ok {
			if s == "" {
				p.add(path+".decimalChar", "must not be empty")
			} else {
				f.DecimalChar = s
			}
		}
	}
	if only("groupChar", TypeNumber, TypeInteger) {
		if s, ok := p.str(m["groupChar"], path+".groupChar"); ok {
			if s != "" && s == f.DecimalChar {
				p.add(path+".groupChar", "must differ from decimalChar %q", f.DecimalChar)
			} else {
				f.GroupChar = s
			}
		}
	}
	if only("bareNumber", TypeNumber, TypeInteger) {
		f.BareNumber = p.boolean(m["bareNumber"], path+".bareNumber")
	}
}

// Constraint applicability by type.
var (
	lengthTypes = []string{TypeString}
	boundTypes  = []string{TypeNumber, TypeInteger, TypeDate, TypeDatetime}
	boundKeys   = []string{"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"}
)

func (p *parser) constraints(v any, f *Field, path string) {
	m, ok := p.object(v, path, constraintKeys, false)
	if !ok {
		return
	}
	c := &f.Constraints
	applies := func(key string, types []string) bool {
		if _, ok := m[key]; !ok {
			return false
		}
		if !slices.Contains(types, f.Type) {
			p.add(path+"."+key, "does not apply to %s fields (only %s)", f.Type, strings.Join(types, ", "))
			return false
		}
		return true
	}
	if v, ok := m["required"]; ok {
		c.Required = p.boolean(v, path+".required")
	}
	if v, ok := m["unique"]; ok {
		c.Unique = p.boolean(v, path+".unique")
	}
	if applies("minLength", lengthTypes) {
		if n, ok := p.integer(m["minLength"], path+".minLength", 0); ok {
			c.MinLength = n
		}
	}
	if applies("maxLength", lengthTypes) {
		if n, ok := p.integer(m["maxLength"], path+".maxLength", 0); ok {
			c.MaxLength = n
		}
	}
	if c.MinLength >= 0 && c.MaxLength >= 0 && c.MinLength > c.MaxLength {
		p.add(path+".minLength", "minLength %d is greater than maxLength %d", c.MinLength, c.MaxLength)
	}
	if applies("pattern", lengthTypes) {
		if s, ok := p.str(m["pattern"], path+".pattern"); ok {
			// Compile the pattern alone first: "a)|(b" must not slip out of the anchoring group.
			_, err := regexp.Compile(s)
			var re *regexp.Regexp
			if err == nil {
				re, err = regexp.Compile(`^(?:` + s + `)$`)
			}
			if err != nil {
				p.add(path+".pattern", "bad regular expression: %v", err)
			} else {
				c.Pattern, f.c.pattern = s, re
			}
		}
	}
	for k, key := range boundKeys {
		if !applies(key, boundTypes) {
			continue
		}
		raw, val, ok := p.typedValue(f, m[key], path+"."+key)
		if !ok {
			continue
		}
		f.c.bounds[k] = &val
		switch k {
		case 0:
			c.Minimum = raw
		case 1:
			c.Maximum = raw
		case 2:
			c.ExclusiveMinimum = raw
		case 3:
			c.ExclusiveMaximum = raw
		}
	}
	p.checkBounds(f, path)
	if v, ok := m["enum"]; ok {
		arr, ok := v.([]any)
		if !ok || len(arr) == 0 {
			p.add(path+".enum", "must be a non-empty array, got %s", jsonKind(v))
			return
		}
		for i, e := range arr {
			raw, val, ok := p.typedValue(f, e, fmt.Sprintf("%s.enum[%d]", path, i))
			if ok {
				c.Enum = append(c.Enum, raw)
				f.c.enum = append(f.c.enum, val)
			}
		}
	}
}

// checkBounds refuses bounds that no value can satisfy.
func (p *parser) checkBounds(f *Field, path string) {
	b := f.c.bounds
	type pair struct {
		lo, hi int
		strict bool
	}
	for _, pr := range []pair{{0, 1, false}, {0, 3, true}, {2, 1, true}, {2, 3, true}} {
		lo, hi := b[pr.lo], b[pr.hi]
		if lo == nil || hi == nil {
			continue
		}
		if lo.Num > hi.Num || (pr.strict && lo.Num == hi.Num) {
			p.add(path+"."+boundKeys[pr.lo], "%s %s and %s %s leave no valid value",
				boundKeys[pr.lo], boundRaw(f, pr.lo), boundKeys[pr.hi], boundRaw(f, pr.hi))
		}
	}
}

func boundRaw(f *Field, k int) string {
	c := f.Constraints
	return string([]json.RawMessage{c.Minimum, c.Maximum, c.ExclusiveMinimum, c.ExclusiveMaximum}[k])
}

// typedValue casts a constraint value (bound or enum entry) with the field's own type and
// format, and returns it as compact JSON too. Date and datetime values may also be written in
// the default ISO form.
func (p *parser) typedValue(f *Field, v any, path string) (json.RawMessage, Value, bool) {
	var cell RawCell
	switch x := v.(type) {
	case json.Number:
		cell = RawCell{Kind: RawNumber, Data: []byte(x.String())}
	case string:
		cell = RawCell{Kind: RawString, Data: []byte(x)}
	case bool:
		cell = RawCell{Kind: RawBool, Data: []byte(fmt.Sprint(x))}
	default:
		p.add(path, "must be a %s value, got %s", f.Type, jsonKind(v))
		return nil, Value{}, false
	}
	var c caster
	val, ok := c.cast(f, cell)
	if !ok && cell.Kind == RawString && (f.Type == TypeDate || f.Type == TypeDatetime) {
		iso, _ := newTimeFormat(f.Type, "default")
		var ms float64
		if ms, ok = iso.parse(string(cell.Data)); ok {
			val = Value{Kind: KindTime, Num: ms}
		}
	}
	if !ok {
		p.add(path, "%s is not a valid %s (format %q)", jsonText(v), f.Type, f.Format)
		return nil, Value{}, false
	}
	raw, err := json.Marshal(v)
	if err != nil {
		p.add(path, "cannot re-encode value: %v", err)
		return nil, Value{}, false
	}
	return raw, val, true
}

func jsonText(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// numericTypes are the types the numeric drift methods accept.
var numericTypes = []string{TypeNumber, TypeInteger, TypeDate, TypeDatetime}

func (p *parser) fieldExt(v any, f *Field, path string, typeOK bool) {
	m, ok := p.object(v, path, fieldExtKeys, false)
	if !ok {
		return
	}
	if v, ok := m["role"]; ok {
		if r, ok := p.str(v, path+".role"); ok {
			if !slices.Contains(roles, Role(r)) {
				p.add(path+".role", "unknown role %q (feature, prediction or label)", r)
			} else {
				f.Role = Role(r)
			}
		}
	}
	v, ok = m["drift"]
	if !ok {
		return
	}
	path += ".drift"
	d, ok := p.object(v, path, driftKeys, false)
	if !ok {
		return
	}
	spec := &DriftSpec{}
	if v, ok := d["method"]; ok {
		if s, ok := p.str(v, path+".method"); ok {
			switch {
			case !slices.Contains(methods, s):
				p.add(path+".method", "unknown drift method %q (%s)", s, strings.Join(methods, ", "))
			case typeOK && (s == MethodKS || s == MethodWasserstein || s == MethodPSI) && !slices.Contains(numericTypes, f.Type):
				p.add(path+".method", "method %s needs a numeric field, %q is %s", s, f.Name, f.Type)
			default:
				spec.Method = s
			}
		}
	}
	if v, ok := d["threshold"]; ok {
		if x, ok := p.number(v, path+".threshold"); ok {
			pValue := spec.Method == MethodKS || spec.Method == MethodChiSquare
			switch {
			case x <= 0:
				p.add(path+".threshold", "must be positive, got %v", x)
			case pValue && x >= 1:
				p.add(path+".threshold", "method %s takes a p-value threshold below 1, got %v", spec.Method, x)
			default:
				spec.Threshold = &x
			}
		}
	}
	if v, ok := d["calibrate"]; ok {
		spec.Calibrate, _ = p.integer(v, path+".calibrate", 2)
	}
	f.Drift = spec
}
