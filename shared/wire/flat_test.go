package wire

import (
	"os"
	"reflect"
	"sort"
	"strings"
	"testing"
)

// TestNestedFieldsAreListed: the SPEC says MQTT payloads are flat JSON objects, so Grafana's MQTT
// data source and Node-RED read them as they are. Every JSON payload field that is not a scalar
// (an object, a map or an array) must be listed in docs/decisions.md as "`TOPIC.FIELD`" with the
// flat alternative a dashboard reads instead; a new nested field fails here until it is.
func TestNestedFieldsAreListed(t *testing.T) {
	doc, err := os.ReadFile("../../docs/decisions.md")
	if err != nil {
		t.Fatal(err)
	}
	payloads := []struct {
		kind Kind
		v    any
	}{
		{KindStatus, Status{}}, {KindHeartbeat, Heartbeat{}}, {KindValidation, Validation{}},
		{KindDrift, Drift{}}, {KindDriftFeature, DriftFeature{}}, {KindDesired, Desired{}},
		{KindReported, Reported{}}, {KindFetch, FetchRequest{}}, {KindFleetRollout, FleetRollout{}},
		{KindFleetDrift, FleetDrift{}},
	}
	var nested []string
	for _, p := range payloads {
		for _, f := range nestedFields(reflect.TypeOf(p.v)) {
			nested = append(nested, topicName(p.kind)+"."+f)
		}
	}
	sort.Strings(nested)
	if len(nested) == 0 {
		t.Fatal("found no nested field at all: the reflection walk is broken")
	}
	for _, n := range nested {
		if !strings.Contains(string(doc), "`"+n+"`") {
			t.Errorf("payload field %s is nested (object or array) but docs/decisions.md does not list `%s` with its flat alternative", n, n)
		}
	}
}

// topicName is the documentation name of a kind's topic: its last level, or "fleet/..." for
// the fleet topics, "drift/{feature}" for per-feature drift.
func topicName(k Kind) string {
	switch k {
	case KindDriftFeature:
		return "drift/{feature}"
	case KindFleetRollout:
		return "fleet/rollouts"
	case KindFleetDrift:
		return "fleet/drift"
	}
	return k.String()
}

// nestedFields lists the JSON names of t's fields whose values are objects, maps or arrays,
// descending into embedded structs (their fields are the payload's own top-level keys).
func nestedFields(t reflect.Type) []string {
	var out []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if f.Anonymous && f.Type.Kind() == reflect.Struct && name == "" {
			out = append(out, nestedFields(f.Type)...)
			continue
		}
		ft := f.Type
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		switch ft.Kind() {
		case reflect.Struct, reflect.Map, reflect.Slice, reflect.Array:
			if ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Uint8 {
				continue // []byte is a base64 string in JSON
			}
			if name == "" {
				name = f.Name
			}
			out = append(out, name)
		}
	}
	return out
}
