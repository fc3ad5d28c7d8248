package state

import (
	"fmt"
	"strings"
)

// Selector picks devices by labels: a conjunction of requirements, written like Kubernetes label
// selectors: "k=v", "k!=v", "k in (a,b)", "k notin (a,b)", "k" (exists), "!k" (absent),
// separated by commas. The empty selector matches every device.
type Selector []Requirement

// Requirement is one term of a Selector.
type Requirement struct {
	Key    string
	Op     string // "=", "!=", "in", "notin", "exists", "!exists"
	Values []string
}

// ParseSelector parses a selector string.
func ParseSelector(s string) (Selector, error) {
	var sel Selector
	s = strings.TrimSpace(s)
	for s != "" {
		var term string
		// A term ends at the first comma outside parentheses.
		depth, end := 0, len(s)
		for i, r := range s {
			if r == '(' {
				depth++
			} else if r == ')' {
				depth--
			} else if r == ',' && depth == 0 {
				end = i
				break
			}
		}
		term, s = strings.TrimSpace(s[:end]), strings.TrimSpace(strings.TrimPrefix(s[end:], ","))
		req, err := parseRequirement(term)
		if err != nil {
			return nil, err
		}
		sel = append(sel, req)
	}
	return sel, nil
}

func parseRequirement(t string) (Requirement, error) {
	bad := func() (Requirement, error) { return Requirement{}, fmt.Errorf("%w: selector term %q", ErrInvalid, t) }
	if t == "" {
		return bad()
	}
	if k, v, ok := strings.Cut(t, "!="); ok {
		return checked(Requirement{Key: strings.TrimSpace(k), Op: "!=", Values: []string{strings.TrimSpace(v)}}, t)
	}
	if k, v, ok := strings.Cut(t, "="); ok {
		return checked(Requirement{Key: strings.TrimSpace(k), Op: "=", Values: []string{strings.TrimSpace(strings.TrimPrefix(v, "="))}}, t)
	}
	for _, op := range []string{" notin ", " in "} {
		if k, rest, ok := strings.Cut(t, op); ok {
			rest = strings.TrimSpace(rest)
			if !strings.HasPrefix(rest, "(") || !strings.HasSuffix(rest, ")") {
				return bad()
			}
			var vals []string
			for _, v := range strings.Split(rest[1:len(rest)-1], ",") {
				vals = append(vals, strings.TrimSpace(v))
			}
			return checked(Requirement{Key: strings.TrimSpace(k), Op: strings.TrimSpace(op), Values: vals}, t)
		}
	}
	if strings.HasPrefix(t, "!") {
		return checked(Requirement{Key: strings.TrimSpace(t[1:]), Op: "!exists"}, t)
	}
	return checked(Requirement{Key: t, Op: "exists"}, t)
}

func checked(r Requirement, t string) (Requirement, error) {
	if !ValidName(r.Key) {
		return Requirement{}, fmt.Errorf("%w: selector term %q: bad label key %q", ErrInvalid, t, r.Key)
	}
	return r, nil
}

// Matches reports whether labels satisfy every requirement.
func (s Selector) Matches(labels map[string]string) bool {
	for _, r := range s {
		v, has := labels[r.Key]
		switch r.Op {
		case "=":
			if !has || v != r.Values[0] {
				return false
			}
		case "!=":
			if has && v == r.Values[0] {
				return false
			}
		case "in":
			if !has || !contains(r.Values, v) {
				return false
			}
		case "notin":
			if has && contains(r.Values, v) {
				return false
			}
		case "exists":
			if !has {
				return false
			}
		case "!exists":
			if has {
				return false
			}
		}
	}
	return true
}

func contains(xs []string, s string) bool {
	for _, x := range xs {
		if x == s {
			return true
		}
	}
	return false
}
