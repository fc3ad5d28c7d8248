package grafana

import (
	"bytes"
	"encoding/json"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/driftline/driftline/shared/wire"
)

const telemetryDoc = moduleRoot + "/docs/telemetry.md"

var exampleRE = regexp.MustCompile("(?s)```json topic=(\\S+)\n(.*?)```")

// strict decodes b into v with no unknown fields, as the wire type names them.
func strict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// TestTelemetryDocExamples decodes every example payload of docs/telemetry.md as the type its
// topic carries, with no unknown field, and validates it as the hub and agents do. Every JSON
// topic of the protocol but data (free-form readings) has an example.
func TestTelemetryDocExamples(t *testing.T) {
	doc, err := os.ReadFile(telemetryDoc)
	if err != nil {
		t.Fatal(err)
	}
	topics := wire.Default()
	seen := map[wire.Kind]bool{}
	for _, m := range exampleRE.FindAllSubmatch(doc, -1) {
		topic, body := string(m[1]), m[2]
		kind, dev, extra, err := topics.Parse(topic)
		if err != nil {
			t.Errorf("example topic %s: %v", topic, err)
			continue
		}
		seen[kind] = true
		var (
			v      any
			decode func([]byte) error
		)
		check := func(id, ex string) {
			if id != dev || ex != extra {
				t.Errorf("%s: example names %q/%q, the topic %q/%q", topic, id, ex, dev, extra)
			}
		}
		switch kind {
		case wire.KindStatus:
			var p wire.Status
			v, decode = &p, func(b []byte) error { _, err := wire.DecodeStatus(b); check(p.DeviceID, ""); return err }
		case wire.KindHeartbeat:
			var p wire.Heartbeat
			v, decode = &p, func(b []byte) error { _, err := wire.DecodeHeartbeat(b); check(p.DeviceID, ""); return err }
		case wire.KindValidation:
			var p wire.Validation
			v, decode = &p, func(b []byte) error { _, err := wire.DecodeValidation(b); check(p.DeviceID, ""); return err }
		case wire.KindDrift:
			var p wire.Drift
			v, decode = &p, func(b []byte) error { _, err := wire.DecodeDrift(b); check(p.DeviceID, ""); return err }
		case wire.KindDriftFeature:
			var p wire.DriftFeature
			v, decode = &p, func([]byte) error { check(p.DeviceID, p.Feature); return p.Validate() }
		case wire.KindDesired:
			var p wire.Desired
			v, decode = &p, func(b []byte) error { _, err := wire.DecodeDesired(b); check(p.DeviceID, ""); return err }
		case wire.KindReported:
			var p wire.Reported
			v, decode = &p, func(b []byte) error { _, err := wire.DecodeReported(b); check(p.DeviceID, ""); return err }
		case wire.KindFetch:
			var p wire.FetchRequest
			v, decode = &p, func(b []byte) error { _, err := wire.DecodeFetchRequest(b); check(p.DeviceID, ""); return err }
		case wire.KindFleetRollout:
			var p wire.FleetRollout
			v, decode = &p, func([]byte) error { check("", p.RolloutID); return p.Validate() }
		case wire.KindAck:
			var p wire.Ack
			v, decode = &p, func(b []byte) error { _, err := wire.DecodeAck(b); check(p.DeviceID, ""); return err }
		case wire.KindPredictionDrift:
			var p wire.PredictionDrift
			v, decode = &p, func(b []byte) error { _, err := wire.DecodePredictionDrift(b); check(p.DeviceID, ""); return err }
		case wire.KindPerformance:
			var p wire.Performance
			v, decode = &p, func(b []byte) error { _, err := wire.DecodePerformance(b); check(p.DeviceID, ""); return err }
		case wire.KindSample:
			var p wire.Sample
			v, decode = &p, func(b []byte) error { _, err := wire.DecodeSample(b); check(p.DeviceID, ""); return err }
		case wire.KindSampleAck:
			var p wire.SampleAck
			v, decode = &p, func(b []byte) error { _, err := wire.DecodeSampleAck(b); check(p.DeviceID, ""); return err }
		case wire.KindFleetDrift, wire.KindFleetPredictionDrift:
			var p wire.FleetDrift
			v, decode = &p, func([]byte) error { check("", p.Model); return p.Validate() }
		default:
			t.Errorf("example for %s, which is not JSON", topic)
			continue
		}
		if err := strict(body, v); err != nil {
			t.Errorf("example for %s: %v", topic, err)
			continue
		}
		if err := decode(body); err != nil {
			t.Errorf("example for %s does not validate: %v", topic, err)
		}
	}
	for _, k := range []wire.Kind{wire.KindStatus, wire.KindHeartbeat, wire.KindValidation, wire.KindDrift, wire.KindDriftFeature,
		wire.KindDesired, wire.KindReported, wire.KindFetch, wire.KindFleetRollout, wire.KindFleetDrift, wire.KindAck,
		wire.KindPredictionDrift, wire.KindPerformance, wire.KindSample, wire.KindSampleAck, wire.KindFleetPredictionDrift} {
		if !seen[k] {
			t.Errorf("docs/telemetry.md has no example payload for %s", k)
		}
		if !bytes.Contains(doc, []byte("`"+topicPattern(k)+"`")) {
			t.Errorf("docs/telemetry.md does not list %s", topicPattern(k))
		}
	}
}

// topicPattern is how the doc writes a kind's topic: dl/v1/dev/{id}/drift/{feature}, ...
func topicPattern(k wire.Kind) string {
	switch k {
	case wire.KindFleetRollout:
		return wire.DefaultPrefix + "/fleet/rollouts/{rollout}"
	case wire.KindFleetDrift:
		return wire.DefaultPrefix + "/fleet/drift/{model}"
	case wire.KindFleetPredictionDrift:
		return wire.DefaultPrefix + "/fleet/prediction_drift/{model}"
	case wire.KindDriftFeature:
		return wire.DefaultPrefix + "/dev/{id}/drift/{feature}"
	}
	return wire.DefaultPrefix + "/dev/{id}/" + k.String()
}

var docMetricRE = regexp.MustCompile("`(driftline_(?:hub|agent)_[a-z0-9_]+)`")

// TestTelemetryDocMetrics checks that docs/telemetry.md names every metric the Go code defines,
// and no metric it does not.
func TestTelemetryDocMetrics(t *testing.T) {
	doc, err := os.ReadFile(telemetryDoc)
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for _, m := range docMetricRE.FindAllSubmatch(doc, -1) {
		documented[string(m[1])] = true
	}
	code := goMetricNames(t)
	var missing, stale []string
	for n := range code {
		if !documented[n] {
			missing = append(missing, n)
		}
	}
	for n := range documented {
		if !code[n] {
			stale = append(stale, n)
		}
	}
	sort.Strings(missing)
	sort.Strings(stale)
	if len(missing) > 0 {
		t.Errorf("docs/telemetry.md lacks a row for: %s", strings.Join(missing, ", "))
	}
	if len(stale) > 0 {
		t.Errorf("docs/telemetry.md names metrics no Go code defines: %s", strings.Join(stale, ", "))
	}
}
