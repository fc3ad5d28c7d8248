package sim

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

var (
	// ErrSyntax is a scenario file that is not YAML of the expected shape.
	ErrSyntax = errors.New("scenario: syntax")
	// ErrInvalid is a scenario that parses but cannot run (a missing or out-of-range setting).
	ErrInvalid = errors.New("scenario: invalid")
	// ErrTooLarge is a scenario file over MaxScenarioBytes.
	ErrTooLarge = errors.New("scenario: file too large")
)

// MaxScenarioBytes bounds a scenario file.
const MaxScenarioBytes = 1 << 20

// ParseFile reads and parses a scenario file; relative replay paths start at its directory.
func ParseFile(path string) (*Scenario, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("scenario: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxScenarioBytes+1))
	if err != nil {
		return nil, fmt.Errorf("scenario %s: %w", path, err)
	}
	s, err := Parse(b, filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// Parse parses and validates a scenario. Errors name the line. dir is the directory relative
// replay paths start from.
func Parse(data []byte, dir string) (*Scenario, error) {
	if len(data) > MaxScenarioBytes {
		return nil, fmt.Errorf("%w (%d bytes, limit %d)", ErrTooLarge, len(data), MaxScenarioBytes)
	}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: empty file", ErrSyntax)
		}
		return nil, fmt.Errorf("%w: %v", ErrSyntax, err)
	}
	if len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%w: line %d: the scenario must be a mapping", ErrSyntax, doc.Line)
	}
	root := doc.Content[0]
	if err := checkKeys(root, reflect.TypeOf(Scenario{})); err != nil {
		return nil, err
	}
	var s Scenario
	if err := root.Decode(&s); err != nil {
		if errors.Is(err, ErrSyntax) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %v", ErrSyntax, err)
	}
	if r := child(root, "replay"); r != nil {
		if err := checkKeys(r, reflect.TypeOf(Replay{})); err != nil {
			return nil, err
		}
	}
	s.Dir = dir
	if err := s.validate(lineOf(root)); err != nil {
		return nil, err
	}
	return &s, nil
}

// UnmarshalYAML reads a field, refusing unknown keys and remembering the line.
func (f *Field) UnmarshalYAML(n *yaml.Node) error {
	if err := checkKeys(n, reflect.TypeOf(Field{})); err != nil {
		return err
	}
	type plain Field
	if err := n.Decode((*plain)(f)); err != nil {
		return err
	}
	f.Line = n.Line
	return nil
}

// UnmarshalYAML reads an event, refusing unknown keys and remembering the line.
func (e *Event) UnmarshalYAML(n *yaml.Node) error {
	if err := checkKeys(n, reflect.TypeOf(Event{})); err != nil {
		return err
	}
	type plain Event
	if err := n.Decode((*plain)(e)); err != nil {
		return err
	}
	e.Line = n.Line
	return nil
}

// UnmarshalYAML reads "90s", "1m30s" or a plain number of seconds.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseDuration(n.Value)
	if err != nil || n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: bad duration %q (want e.g. 90s, 5m or a number of seconds)", n.Line, n.Value)
	}
	*d = v
	return nil
}

// MarshalYAML writes the duration as Go's duration text.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// ParseDuration reads "90s", "1m30s" or a plain non-negative number of seconds.
func ParseDuration(s string) (Duration, error) {
	s = strings.TrimSpace(s)
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		if f < 0 || f > 1e9 {
			return 0, fmt.Errorf("duration %q out of range", s)
		}
		return Duration(f * float64(time.Second)), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, err
	}
	if d < 0 {
		return 0, fmt.Errorf("negative duration %q", s)
	}
	return Duration(d), nil
}

// checkKeys refuses a mapping key that is not a yaml tag of t, naming its line, and a node
// that is not a mapping.
func checkKeys(n *yaml.Node, t reflect.Type) error {
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("%w: line %d: want a mapping", ErrSyntax, n.Line)
	}
	known := map[string]bool{}
	for i := 0; i < t.NumField(); i++ {
		tag, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if tag != "" && tag != "-" {
			known[tag] = true
		}
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		if !known[k.Value] {
			return fmt.Errorf("%w: line %d: unknown key %q", ErrSyntax, k.Line, k.Value)
		}
	}
	return nil
}

// child returns the value node of key in mapping n, or nil.
func child(n *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

// lineOf maps top-level keys to their lines, for validation messages.
func lineOf(root *yaml.Node) map[string]int {
	m := map[string]int{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		m[root.Content[i].Value] = root.Content[i].Line
	}
	return m
}
