package cli

import (
	"encoding/json"
	"net/url"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/driftline/driftline/hub/state"
)

// exactArgs is cobra.ExactArgs with the usage line in the message and ErrUsage wrapped.
func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usagef("%s takes %d argument(s), got %d: usage: %s", cmd.CommandPath(), n, len(args), cmd.UseLine())
		}
		return nil
	}
}

// rangeArgs is cobra.RangeArgs with the usage line in the message and ErrUsage wrapped.
func rangeArgs(lo, hi int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < lo || len(args) > hi {
			return usagef("%s takes %d to %d arguments, got %d: usage: %s", cmd.CommandPath(), lo, hi, len(args), cmd.UseLine())
		}
		return nil
	}
}

// minArgs is cobra.MinimumNArgs with the usage line in the message and ErrUsage wrapped.
func minArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < n {
			return usagef("%s takes at least %d arguments, got %d: usage: %s", cmd.CommandPath(), n, len(args), cmd.UseLine())
		}
		return nil
	}
}

// parseEdits turns KEY=VALUE (set) and KEY- (remove: a nil value) arguments into a patch.
func parseEdits(what string, args []string) (map[string]*string, error) {
	patch := make(map[string]*string, len(args))
	for _, s := range args {
		if k, ok := strings.CutSuffix(s, "-"); ok && !strings.Contains(s, "=") {
			if k == "" {
				return nil, usagef("%s %q: want KEY=VALUE or KEY-", what, s)
			}
			patch[k] = nil
			continue
		}
		k, v, err := splitKV(what, s)
		if err != nil {
			return nil, usagef("%s %q: want KEY=VALUE or KEY-", what, s)
		}
		patch[k] = &v
	}
	return patch, nil
}

// parseVersion parses a version argument: a positive integer.
func parseVersion(what, s string) (int, error) {
	v, err := strconv.Atoi(s)
	if err != nil || v < 1 {
		return 0, usagef("%s %q: want a positive integer", what, s)
	}
	return v, nil
}

// splitKV splits "k=v"; the key must not be empty.
func splitKV(what, s string) (string, string, error) {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return "", "", usagef("%s %q: want KEY=VALUE", what, s)
	}
	return k, v, nil
}

// parseLabels turns k=v flags into a map.
func parseLabels(what string, kvs []string) (map[string]string, error) {
	m := map[string]string{}
	for _, s := range kvs {
		k, v, err := splitKV(what, s)
		if err != nil {
			return nil, err
		}
		m[k] = v
	}
	return m, nil
}

// parseRef parses NAME@VERSION.
func parseRef(what, s string) (string, int, error) {
	name, ver, ok := strings.Cut(s, "@")
	if !ok || name == "" {
		return "", 0, usagef("%s %q: want NAME@VERSION", what, s)
	}
	v, err := parseVersion(what+" version", ver)
	if err != nil {
		return "", 0, err
	}
	return name, v, nil
}

// parseParent parses a --parent of dataset NAME: "3" (NAME@3) or "OTHER@3".
func parseParent(name, s string) (state.VersionRef, error) {
	if !strings.Contains(s, "@") {
		v, err := parseVersion("--parent", s)
		return state.VersionRef{Dataset: name, Version: v}, err
	}
	ds, v, err := parseRef("--parent", s)
	return state.VersionRef{Dataset: ds, Version: v}, err
}

// paramValue reads a --param value as a JSON number, boolean or null when it is one, else as a
// string, so `--param epochs=10` records the number 10 and `--param opt=adam` the string.
func paramValue(s string) any {
	var v any
	if err := json.Unmarshal([]byte(s), &v); err == nil {
		switch v.(type) {
		case float64, bool, nil:
			return v
		}
	}
	return s
}

// parseMetric parses a --metric value.
func parseMetric(s string) (string, float64, error) {
	k, v, err := splitKV("--metric", s)
	if err != nil {
		return "", 0, err
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		return "", 0, usagef("--metric %q: value must be a number", s)
	}
	return k, f, nil
}

// seg escapes one path segment of an API URL.
func seg(s string) string { return url.PathEscape(s) }
