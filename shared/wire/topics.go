package wire

import (
	"fmt"
	"strings"
)

// DefaultPrefix is the topic prefix when none is configured.
const DefaultPrefix = "dl/v1"

// Kind identifies a topic of the protocol (SPEC section 3).
type Kind uint8

// Topic kinds. KindUnknown is the zero value and never a valid topic.
const (
	KindUnknown Kind = iota
	// KindStatus is PREFIX/dev/{id}/status: agent, retained, JSON Status.
	KindStatus
	// KindHeartbeat is PREFIX/dev/{id}/heartbeat: agent, QoS 0, JSON Heartbeat.
	KindHeartbeat
	// KindData is PREFIX/dev/{id}/data: sensor readings to the agent, a JSON object or array.
	KindData
	// KindValidation is PREFIX/dev/{id}/validation: agent, JSON Validation.
	KindValidation
	// KindDrift is PREFIX/dev/{id}/drift: agent, JSON Drift.
	KindDrift
	// KindDriftFeature is PREFIX/dev/{id}/drift/{feature}: agent, JSON DriftFeature.
	KindDriftFeature
	// KindProfile is PREFIX/dev/{id}/profile: agent, binary (zstd profile).
	KindProfile
	// KindDesired is PREFIX/dev/{id}/desired: hub, retained, JSON Desired.
	KindDesired
	// KindReported is PREFIX/dev/{id}/reported: agent, retained, JSON Reported.
	KindReported
	// KindFetch is PREFIX/dev/{id}/fetch: agent, JSON FetchRequest.
	KindFetch
	// KindChunk is PREFIX/dev/{id}/chunk: hub, binary chunk frames.
	KindChunk
	// KindFleetRollout is PREFIX/fleet/rollouts/{rollout}: hub, retained, JSON FleetRollout.
	KindFleetRollout
	// KindFleetDrift is PREFIX/fleet/drift/{model}: hub, JSON FleetDrift.
	KindFleetDrift
	// KindAck is PREFIX/dev/{id}/ack: hub, JSON Ack (the hub's receipt of numbered reports).
	KindAck
	// KindPredictionDrift is PREFIX/dev/{id}/prediction_drift: agent, JSON PredictionDrift.
	KindPredictionDrift
	// KindPerformance is PREFIX/dev/{id}/performance: agent, JSON Performance.
	KindPerformance
	// KindSample is PREFIX/dev/{id}/sample: agent, JSON Sample.
	KindSample
	// KindModelChunk is PREFIX/model/{model}/chunk: hub, binary chunk frames of the model's
	// versions, published once for every device pulling the model (the broker multiplies them);
	// only devices whose desired state names the model may subscribe.
	KindModelChunk
	// KindPredictionProfile is PREFIX/dev/{id}/prediction_profile: agent, binary (zstd
	// profile of one output window's predictions), merged by the hub into the fleet's
	// prediction drift.
	KindPredictionProfile
	// KindFleetPredictionDrift is PREFIX/fleet/prediction_drift/{model}: hub, JSON FleetDrift
	// of the merged prediction profiles against the output reference.
	KindFleetPredictionDrift
	// KindSamplePart is PREFIX/dev/{id}/sample_part: agent, binary chunk frames (the layout
	// of KindChunk) carrying one sample upload; the frame's request id is the upload id.
	KindSamplePart
	// KindSampleAck is PREFIX/dev/{id}/sample_ack: hub, JSON SampleAck (the hub's receipt of
	// one sample upload).
	KindSampleAck
)

// kindLevels is the last topic level (under dev/{id}/) of each device kind.
var kindLevels = map[Kind]string{
	KindStatus:       "status",
	KindHeartbeat:    "heartbeat",
	KindData:         "data",
	KindValidation:   "validation",
	KindDrift:        "drift",
	KindDriftFeature: "drift/+",
	KindProfile:      "profile",
	KindDesired:      "desired",
	KindReported:     "reported",
	KindFetch:        "fetch",
	KindChunk:        "chunk",
	KindFleetRollout: "fleet/rollouts",
	KindFleetDrift:   "fleet/drift",
	KindAck:          "ack",

	KindPredictionDrift: "prediction_drift",
	KindPerformance:     "performance",
	KindSample:          "sample",
	KindModelChunk:      "model/chunk",

	KindPredictionProfile:    "prediction_profile",
	KindFleetPredictionDrift: "fleet/prediction_drift",
	KindSamplePart:           "sample_part",
	KindSampleAck:            "sample_ack",
}

// String returns the kind's topic suffix, e.g. "heartbeat" or "drift/+".
func (k Kind) String() string {
	if s, ok := kindLevels[k]; ok {
		return s
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// QoS returns the MQTT QoS the protocol uses for the kind: 0 for heartbeats, 1 for the rest.
func (k Kind) QoS() byte {
	if k == KindHeartbeat {
		return 0
	}
	return 1
}

// Retained reports whether messages of the kind are published retained: status, desired,
// reported and fleet rollout progress, so a late subscriber sees the latest state.
func (k Kind) Retained() bool {
	switch k {
	case KindStatus, KindDesired, KindReported, KindFleetRollout:
		return true
	}
	return false
}

// Binary reports whether the kind's payload is binary rather than JSON.
func (k Kind) Binary() bool {
	return k == KindProfile || k == KindChunk || k == KindModelChunk || k == KindPredictionProfile || k == KindSamplePart
}

// FromHub reports whether only the hub may publish the kind. A device may never publish
// desired or chunk, nor anything under fleet/.
func (k Kind) FromHub() bool {
	switch k {
	case KindDesired, KindChunk, KindFleetRollout, KindFleetDrift, KindAck, KindModelChunk, KindFleetPredictionDrift, KindSampleAck:
		return true
	}
	return false
}

// Topics builds and parses the protocol's topics under one prefix. The zero Topics is not
// usable: use NewTopics or Default.
type Topics struct {
	prefix string
}

// Default returns Topics under DefaultPrefix.
func Default() Topics { return Topics{prefix: DefaultPrefix} }

// NewTopics returns Topics under prefix, which must be non-empty, with no empty level, no
// wildcard and no leading '$'. Use DefaultPrefix unless a deployment shares a broker.
func NewTopics(prefix string) (Topics, error) {
	if prefix == "" || strings.HasPrefix(prefix, "$") {
		return Topics{}, fmt.Errorf("%w: %q", ErrBadPrefix, prefix)
	}
	for _, level := range strings.Split(prefix, "/") {
		if err := ValidateName("prefix level", level); err != nil {
			return Topics{}, fmt.Errorf("%w: %q: %v", ErrBadPrefix, prefix, err)
		}
	}
	return Topics{prefix: prefix}, nil
}

// Prefix returns the topic prefix, e.g. "dl/v1".
func (t Topics) Prefix() string { return t.prefix }

// The builders below do not validate: id, feature, model and rollout must satisfy
// ValidateName, which the agent checks at configuration load and the hub at registration.

func (t Topics) dev(id, leaf string) string { return t.prefix + "/dev/" + id + "/" + leaf }

// Status returns PREFIX/dev/{id}/status.
func (t Topics) Status(id string) string { return t.dev(id, "status") }

// Heartbeat returns PREFIX/dev/{id}/heartbeat.
func (t Topics) Heartbeat(id string) string { return t.dev(id, "heartbeat") }

// Data returns PREFIX/dev/{id}/data.
func (t Topics) Data(id string) string { return t.dev(id, "data") }

// Validation returns PREFIX/dev/{id}/validation.
func (t Topics) Validation(id string) string { return t.dev(id, "validation") }

// Drift returns PREFIX/dev/{id}/drift.
func (t Topics) Drift(id string) string { return t.dev(id, "drift") }

// DriftFeature returns PREFIX/dev/{id}/drift/{feature}.
func (t Topics) DriftFeature(id, feature string) string { return t.dev(id, "drift/"+feature) }

// Profile returns PREFIX/dev/{id}/profile.
func (t Topics) Profile(id string) string { return t.dev(id, "profile") }

// Desired returns PREFIX/dev/{id}/desired.
func (t Topics) Desired(id string) string { return t.dev(id, "desired") }

// Ack returns PREFIX/dev/{id}/ack.
func (t Topics) Ack(id string) string { return t.dev(id, "ack") }

// Reported returns PREFIX/dev/{id}/reported.
func (t Topics) Reported(id string) string { return t.dev(id, "reported") }

// Fetch returns PREFIX/dev/{id}/fetch.
func (t Topics) Fetch(id string) string { return t.dev(id, "fetch") }

// Chunk returns PREFIX/dev/{id}/chunk.
func (t Topics) Chunk(id string) string { return t.dev(id, "chunk") }

// ModelChunk returns PREFIX/model/{model}/chunk, the shared chunk topic of a model.
func (t Topics) ModelChunk(model string) string { return t.prefix + "/model/" + model + "/chunk" }

// FleetRollout returns PREFIX/fleet/rollouts/{rollout}.
func (t Topics) FleetRollout(rollout string) string {
	return t.prefix + "/fleet/rollouts/" + rollout
}

// FleetDrift returns PREFIX/fleet/drift/{model}.
func (t Topics) FleetDrift(model string) string { return t.prefix + "/fleet/drift/" + model }

// FleetPredictionDrift returns PREFIX/fleet/prediction_drift/{model}.
func (t Topics) FleetPredictionDrift(model string) string {
	return t.prefix + "/fleet/prediction_drift/" + model
}

// PredictionProfile returns PREFIX/dev/{id}/prediction_profile.
func (t Topics) PredictionProfile(id string) string { return t.dev(id, "prediction_profile") }

// All returns the filter PREFIX/# matching every topic of the protocol.
func (t Topics) All() string { return t.prefix + "/#" }

// DevicePrefix returns PREFIX/dev/{id}/, the prefix under which a device may publish and
// subscribe (broker ACL).
func (t Topics) DevicePrefix(id string) string { return t.prefix + "/dev/" + id + "/" }

// Device returns the filter PREFIX/dev/{id}/# matching every topic of one device.
func (t Topics) Device(id string) string { return t.DevicePrefix(id) + "#" }

// AllDevices returns the filter matching kind k on every device, e.g. PREFIX/dev/+/heartbeat
// or PREFIX/dev/+/drift/+; for the fleet kinds, PREFIX/fleet/rollouts/+ and PREFIX/fleet/drift/+.
// It returns "" for KindUnknown.
func (t Topics) AllDevices(k Kind) string {
	switch k {
	case KindUnknown:
		return ""
	case KindFleetRollout, KindFleetDrift, KindFleetPredictionDrift:
		return t.prefix + "/" + k.String() + "/+"
	case KindModelChunk:
		return t.ModelChunk("+")
	}
	if _, ok := kindLevels[k]; !ok {
		return ""
	}
	return t.dev("+", k.String())
}

// Parse splits a topic of the protocol into its kind, its device id (empty for fleet topics)
// and its extra level (the feature of a drift/{feature} topic, the rollout id or model of a
// fleet topic, the model of a model/{model}/chunk topic). It returns ErrForeignTopic for a topic outside the prefix, ErrUnknownTopic for
// an unknown shape and ErrBadName for a level that fails ValidateName.
func (t Topics) Parse(topic string) (k Kind, deviceID, extra string, err error) {
	rest, ok := strings.CutPrefix(topic, t.prefix+"/")
	if !ok || t.prefix == "" {
		return KindUnknown, "", "", fmt.Errorf("%w: %.200q", ErrForeignTopic, topic)
	}
	levels := strings.Split(rest, "/")
	unknown := fmt.Errorf("%w: %.200q", ErrUnknownTopic, topic)
	switch {
	case levels[0] == "dev" && len(levels) == 3:
		k = deviceKinds[levels[2]]
		if k == KindUnknown {
			return KindUnknown, "", "", unknown
		}
		deviceID = levels[1]
	case levels[0] == "dev" && len(levels) == 4 && levels[2] == "drift":
		k, deviceID, extra = KindDriftFeature, levels[1], levels[3]
		if err := ValidateName("feature", extra); err != nil {
			return KindUnknown, "", "", fmt.Errorf("topic %.200q: %w", topic, err)
		}
	case levels[0] == "fleet" && len(levels) == 3 && levels[1] == "rollouts":
		k, extra = KindFleetRollout, levels[2]
	case levels[0] == "fleet" && len(levels) == 3 && levels[1] == "drift":
		k, extra = KindFleetDrift, levels[2]
	case levels[0] == "model" && len(levels) == 3 && levels[2] == "chunk":
		k, extra = KindModelChunk, levels[1]
	case levels[0] == "fleet" && len(levels) == 3 && levels[1] == "prediction_drift":
		k, extra = KindFleetPredictionDrift, levels[2]
	default:
		return KindUnknown, "", "", unknown
	}
	if k == KindFleetRollout || k == KindFleetDrift || k == KindModelChunk || k == KindFleetPredictionDrift {
		if err := ValidateName(k.String(), extra); err != nil {
			return KindUnknown, "", "", fmt.Errorf("topic %.200q: %w", topic, err)
		}
		return k, "", extra, nil
	}
	if err := ValidateName("device id", deviceID); err != nil {
		return KindUnknown, "", "", fmt.Errorf("topic %.200q: %w", topic, err)
	}
	return k, deviceID, extra, nil
}

// deviceKinds maps the last level of PREFIX/dev/{id}/{leaf} to its kind.
var deviceKinds = map[string]Kind{
	"status":     KindStatus,
	"heartbeat":  KindHeartbeat,
	"data":       KindData,
	"validation": KindValidation,
	"drift":      KindDrift,
	"profile":    KindProfile,
	"desired":    KindDesired,
	"reported":   KindReported,
	"fetch":      KindFetch,
	"chunk":      KindChunk,
	"ack":        KindAck,

	"prediction_drift": KindPredictionDrift,
	"performance":      KindPerformance,
	"sample":           KindSample,

	"prediction_profile": KindPredictionProfile,
	"sample_part":        KindSamplePart,
	"sample_ack":         KindSampleAck,
}
