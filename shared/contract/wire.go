package contract

import "encoding/json"

// The wire types give the canonical JSON form of a parsed Schema: fixed key order, defaults
// written out, so that equal contracts marshal to equal bytes (see Schema.Digest).

type wireSchema struct {
	Fields        []wireField   `json:"fields"`
	MissingValues []string      `json:"missingValues"`
	PrimaryKey    []string      `json:"primaryKey,omitempty"`
	Driftline     wireSchemaExt `json:"x-driftline"`
}

type wireSchemaExt struct {
	Mostly float64     `json:"mostly"`
	Window *Window     `json:"window,omitempty"`
	Drift  SchemaDrift `json:"drift"`
	// Task, Metric and Collect are omitted when unset, so an input contract's digest does not
	// change with their introduction.
	Task    string `json:"task,omitempty"`
	Metric  string `json:"metric,omitempty"`
	Collect bool   `json:"collect,omitempty"`
}

type wireField struct {
	Name          string           `json:"name"`
	Title         string           `json:"title,omitempty"`
	Description   string           `json:"description,omitempty"`
	Type          string           `json:"type"`
	Format        string           `json:"format"`
	Constraints   *wireConstraints `json:"constraints,omitempty"`
	MissingValues *[]string        `json:"missingValues,omitempty"`
	TrueValues    []string         `json:"trueValues,omitempty"`
	FalseValues   []string         `json:"falseValues,omitempty"`
	DecimalChar   string           `json:"decimalChar,omitempty"`
	GroupChar     string           `json:"groupChar,omitempty"`
	BareNumber    *bool            `json:"bareNumber,omitempty"`
	Driftline     wireFieldExt     `json:"x-driftline"`
}

type wireFieldExt struct {
	Role  Role       `json:"role"`
	Drift *DriftSpec `json:"drift,omitempty"`
}

type wireConstraints struct {
	Required         bool              `json:"required,omitempty"`
	Unique           bool              `json:"unique,omitempty"`
	Minimum          json.RawMessage   `json:"minimum,omitempty"`
	Maximum          json.RawMessage   `json:"maximum,omitempty"`
	ExclusiveMinimum json.RawMessage   `json:"exclusiveMinimum,omitempty"`
	ExclusiveMaximum json.RawMessage   `json:"exclusiveMaximum,omitempty"`
	MinLength        *int              `json:"minLength,omitempty"`
	MaxLength        *int              `json:"maxLength,omitempty"`
	Pattern          string            `json:"pattern,omitempty"`
	Enum             []json.RawMessage `json:"enum,omitempty"`
}

func toWire(s *Schema) wireSchema {
	w := wireSchema{
		Fields:        make([]wireField, len(s.Fields)),
		MissingValues: s.MissingValues,
		PrimaryKey:    s.PrimaryKey,
		Driftline: wireSchemaExt{
			Mostly: s.Driftline.Mostly,
			Drift:  s.Driftline.Drift,
			Task:   s.Driftline.Task, Metric: s.Driftline.Metric, Collect: s.Driftline.Collect,
		},
	}
	if w.MissingValues == nil {
		w.MissingValues = []string{}
	}
	if s.Driftline.Window != (Window{}) {
		win := s.Driftline.Window
		w.Driftline.Window = &win
	}
	for i := range s.Fields {
		w.Fields[i] = fieldToWire(&s.Fields[i])
	}
	return w
}

func fieldToWire(f *Field) wireField {
	wf := wireField{
		Name:        f.Name,
		Title:       f.Title,
		Description: f.Description,
		Type:        f.Type,
		Format:      f.Format,
		Driftline:   wireFieldExt{Role: f.Role, Drift: f.Drift},
	}
	if f.MissingValues != nil {
		mv := f.MissingValues
		wf.MissingValues = &mv
	}
	switch f.Type {
	case TypeBoolean:
		wf.TrueValues, wf.FalseValues = f.TrueValues, f.FalseValues
	case TypeNumber, TypeInteger:
		wf.DecimalChar, wf.GroupChar = f.DecimalChar, f.GroupChar
		bare := f.BareNumber
		wf.BareNumber = &bare
	}
	c := f.Constraints
	wc := wireConstraints{
		Required: c.Required, Unique: c.Unique,
		Minimum: c.Minimum, Maximum: c.Maximum,
		ExclusiveMinimum: c.ExclusiveMinimum, ExclusiveMaximum: c.ExclusiveMaximum,
		Pattern: c.Pattern, Enum: c.Enum,
	}
	if c.MinLength >= 0 {
		n := c.MinLength
		wc.MinLength = &n
	}
	if c.MaxLength >= 0 {
		n := c.MaxLength
		wc.MaxLength = &n
	}
	if wc.Required || wc.Unique || wc.Minimum != nil || wc.Maximum != nil || wc.ExclusiveMinimum != nil ||
		wc.ExclusiveMaximum != nil || wc.MinLength != nil || wc.MaxLength != nil || wc.Pattern != "" || wc.Enum != nil {
		wf.Constraints = &wc
	}
	return wf
}
