package pipeline

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/driftline/driftline/shared/contract"
)

// InferRows is how many rows InferContract reads.
const InferRows = 1000

// InferContract guesses a contract from the first InferRows rows of a CSV or JSONL file, for
// `driftline-agent profile` without --contract: columns in first-seen order; a column is
// "number" when every non-empty value is a number, "boolean" when every one is true or false,
// otherwise "string". No constraints. Rows further on that break the guess are invalid and
// left out of the profile. Errors wrap ErrBadInput.
func InferContract(path string) (*contract.Schema, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadInput, err)
	}
	defer f.Close()
	var cols []*inferred
	switch strings.ToLower(filepath.Ext(path)) {
	case ".csv":
		cols, err = inferCSV(f)
	case ".jsonl", ".ndjson":
		cols, err = inferJSONL(f)
	default:
		return nil, fmt.Errorf("%w: %s: want a .csv or .jsonl file", ErrBadInput, path)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: infer a contract from %s: %w", ErrBadInput, path, err)
	}
	if len(cols) == 0 {
		return nil, fmt.Errorf("%w: infer a contract from %s: no columns", ErrBadInput, path)
	}
	type field struct {
		Name string `json:"name"`
		Type string `json:"type"`
	}
	doc := struct {
		Fields []field `json:"fields"`
	}{}
	for _, c := range cols {
		doc.Fields = append(doc.Fields, field{c.name, c.typ()})
	}
	b, _ := json.Marshal(doc)
	s, err := contract.Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%w: inferred contract: %w", ErrBadInput, err)
	}
	return s, nil
}

// inferred tracks which types every value of a column seen so far fits.
type inferred struct {
	name          string
	seen          bool
	number, boolV bool
}

func newInferred(name string) *inferred { return &inferred{name: name, number: true, boolV: true} }

func (c *inferred) text(v string) {
	if v == "" {
		return
	}
	c.seen = true
	if _, err := strconv.ParseFloat(v, 64); err != nil {
		c.number = false
	}
	if v != "true" && v != "false" {
		c.boolV = false
	}
}

func (c *inferred) typ() string {
	switch {
	case !c.seen:
		return contract.TypeString
	case c.number:
		return contract.TypeNumber
	case c.boolV:
		return contract.TypeBoolean
	}
	return contract.TypeString
}

func inferCSV(r io.Reader) ([]*inferred, error) {
	cr := csv.NewReader(bufio.NewReader(r))
	cr.FieldsPerRecord = -1
	header, err := cr.Read()
	if err != nil {
		return nil, fmt.Errorf("header: %w", err)
	}
	if len(header) > 0 {
		header[0] = strings.TrimPrefix(header[0], "\ufeff")
	}
	var cols []*inferred
	seen := map[string]bool{}
	for _, h := range header {
		if h == "" || seen[h] {
			return nil, fmt.Errorf("header: empty or repeated column name %q", h)
		}
		seen[h] = true
		cols = append(cols, newInferred(h))
	}
	for range InferRows {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			continue // a broken record says nothing about types
		}
		for i, v := range rec {
			if i < len(cols) {
				cols[i].text(v)
			}
		}
	}
	return cols, nil
}

func inferJSONL(r io.Reader) ([]*inferred, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	var cols []*inferred
	index := map[string]*inferred{}
	for n := 0; n < InferRows && sc.Scan(); {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		n++
		dec := json.NewDecoder(strings.NewReader(line))
		dec.UseNumber()
		var obj map[string]any
		if dec.Decode(&obj) != nil {
			continue
		}
		for _, k := range slices.Sorted(maps.Keys(obj)) {
			c := index[k]
			if c == nil {
				c = newInferred(k)
				index[k] = c
				cols = append(cols, c)
			}
			switch v := obj[k].(type) {
			case json.Number:
				c.text(v.String())
			case bool:
				c.text(strconv.FormatBool(v))
			case string:
				c.seen, c.number, c.boolV = true, false, false
			case nil:
			default:
				c.seen, c.number, c.boolV = true, false, false
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return cols, nil
}
