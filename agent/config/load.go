package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"

	"gopkg.in/yaml.v3"
)

// Load reads, defaults and validates the YAML file at path. See Parse.
func Load(path string) (Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return Config{}, fmt.Errorf("config: read %s: %w", path, err)
	}
	c, err := Parse(b)
	if err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// Parse decodes one YAML document over Default(), refusing unknown keys and values of the wrong
// type (ErrSyntax, with the line), then validates it (ErrInvalid, every problem with its key and
// line). It never panics, whatever the input.
func Parse(b []byte) (c Config, err error) {
	// yaml.v3 has panicked on some malformed inputs in the past: a config file is outside input,
	// so a panic inside the decoder becomes a syntax error here.
	defer func() {
		if r := recover(); r != nil {
			c, err = Config{}, fmt.Errorf("%w: the YAML decoder failed: %v", ErrSyntax, r)
		}
	}()
	if len(b) > MaxFileSize {
		return Config{}, fmt.Errorf("%w: %d bytes, at most %d", ErrTooLarge, len(b), MaxFileSize)
	}
	c = Default()
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&root); err != nil && !errors.Is(err, io.EOF) {
		return Config{}, fmt.Errorf("%w: %v", ErrSyntax, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return Config{}, fmt.Errorf("%w: only one YAML document is allowed", ErrSyntax)
	}
	lines := map[string]int{}
	if len(root.Content) > 0 {
		doc := root.Content[0]
		if doc.Kind != yaml.MappingNode {
			return Config{}, fmt.Errorf("%w: line %d: the file must be a mapping of keys", ErrSyntax, doc.Line)
		}
		if err := checkAliases(doc, 0); err != nil {
			return Config{}, err
		}
		collectLines(doc, "", lines)
		// A second, strict pass over the same bytes: KnownFields refuses misspelt keys, and
		// type errors keep the file's line numbers.
		strict := yaml.NewDecoder(bytes.NewReader(b))
		strict.KnownFields(true)
		if err := strict.Decode(&c); err != nil {
			return Config{}, fmt.Errorf("%w: %v", ErrSyntax, err)
		}
	}
	if err := c.validate(lines); err != nil {
		return Config{}, err
	}
	return c, nil
}

// checkAliases refuses YAML aliases (billion-laughs expansion) and very deep nesting.
func checkAliases(n *yaml.Node, depth int) error {
	if depth > 32 {
		return fmt.Errorf("%w: line %d: nesting deeper than 32", ErrSyntax, n.Line)
	}
	if n.Kind == yaml.AliasNode {
		return fmt.Errorf("%w: line %d: YAML aliases are not allowed", ErrSyntax, n.Line)
	}
	for _, c := range n.Content {
		if err := checkAliases(c, depth+1); err != nil {
			return err
		}
	}
	return nil
}

// collectLines records the line of every key, by path ("fetch.timeout", "brokers[1]").
func collectLines(n *yaml.Node, prefix string, lines map[string]int) {
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := k.Value
			if prefix != "" {
				p = prefix + "." + k.Value
			}
			lines[p] = k.Line
			collectLines(v, p, lines)
		}
	case yaml.SequenceNode:
		for i, v := range n.Content {
			p := prefix + "[" + strconv.Itoa(i) + "]"
			lines[p] = v.Line
			collectLines(v, p, lines)
		}
	}
}

// UnmarshalYAML reads duration text or a number of seconds.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: a duration must be text like 10s or a number of seconds", n.Line)
	}
	v, err := ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %v", n.Line, err)
	}
	*d = v
	return nil
}
