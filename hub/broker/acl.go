package broker

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// DefaultPrefix is the topic prefix of the Driftline protocol (SPEC section 3).
const DefaultPrefix = "dl/v1"

// Topic kinds a device may never publish under its own subtree: the hub writes them.
const (
	kindDesired = "desired"
	kindChunk   = "chunk"
)

// maxIDLen bounds a device id placed in the ACL table; longer ids are refused at connect.
const maxIDLen = 256

// rules decides what a principal may do with a topic name (publish, delivery) or a topic filter
// (subscribe). It is pure, allocates nothing and is safe for concurrent use; the same decision is
// rendered for Mosquitto by WriteMosquittoACL.
type rules struct {
	prefix    string // "dl/v1"
	devBase   string // "dl/v1/dev/"
	modelBase string // "dl/v1/model/"
}

// modelChunkLeaf ends a model's shared chunk topic, "{prefix}/model/{name}/chunk".
const modelChunkLeaf = "/chunk"

// newRules validates prefix (one or more non-empty topic levels, no wildcards, no leading '$')
// and returns the rules for it.
func newRules(prefix string) (rules, error) {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	if strings.HasPrefix(prefix, "$") {
		return rules{}, fmt.Errorf("%w: prefix %q starts with '$'", ErrConfig, prefix)
	}
	for _, level := range strings.Split(prefix, "/") {
		if !validLevel(level) {
			return rules{}, fmt.Errorf("%w: prefix %q: every level must be non-empty, without '+', '#' or NUL", ErrConfig, prefix)
		}
	}
	return rules{prefix: prefix, devBase: prefix + "/dev/", modelBase: prefix + "/model/"}, nil
}

// validLevel reports whether s can stand as one literal topic level: non-empty, valid UTF-8, at most
// maxIDLen bytes, and free of '/', '+', '#' and NUL. A device id must pass it, or a device could
// name a wildcard and read other devices' topics.
func validLevel(s string) bool {
	if s == "" || len(s) > maxIDLen || !utf8.ValidString(s) {
		return false
	}
	return !strings.ContainsAny(s, "/+#\x00")
}

// validPrincipal reports whether p can be given an ACL entry.
func validPrincipal(p Principal) bool {
	switch p.Kind {
	case Device: // one topic level, and outside the token client-id namespaces (principal.go)
		return validLevel(p.ID) && !strings.Contains(p.ID, ":") && !strings.HasPrefix(p.ID, "@")
	case Viewer, Hub, Admin:
		return p.ID != "" && !strings.Contains(p.ID, ":")
	default:
		return false
	}
}

// modelTopic returns the model of a shared chunk topic "{prefix}/model/{name}/chunk" (name one
// literal level: a filter with a wildcard is not one), and whether topic is one.
func (r rules) modelTopic(topic string) (string, bool) {
	rest, ok := strings.CutPrefix(topic, r.modelBase)
	if !ok {
		return "", false
	}
	name, ok := strings.CutSuffix(rest, modelChunkLeaf)
	if !ok || !validLevel(name) {
		return "", false
	}
	return name, true
}

// allow reports whether p may publish to topic (write) or subscribe to, or receive, topic (read;
// topic may then be a filter with wildcards). A device's filter must stay literally inside
// "{prefix}/dev/{id}/": "dl/v1/dev/+/status" is refused even though it matches the device's own
// status topic, because it matches every other device's too. A model's shared chunk topic is
// only the hub's to publish; whether a device may read one depends on its desired state, which
// these pure rules do not know (the hook asks its ModelAuthorizer): here it is refused.
func (r rules) allow(p Principal, topic string, write bool) bool {
	switch p.Kind {
	case Hub:
		return true
	case Admin:
		if _, ok := r.modelTopic(topic); ok && write {
			return false
		}
		if write {
			if rest, ok := strings.CutPrefix(topic, r.devBase); ok {
				if _, rest, ok = strings.Cut(rest, "/"); ok { // skip the device id
					kind, _, _ := strings.Cut(rest, "/")
					return kind != kindDesired && kind != kindChunk
				}
			}
		}
		return true
	case Viewer:
		return !write && len(topic) > len(r.prefix)+1 && strings.HasPrefix(topic, r.prefix) && topic[len(r.prefix)] == '/'
	case Device:
		rest, ok := r.deviceRest(p.ID, topic)
		if !ok || rest == "" {
			return false
		}
		if write {
			kind, _, _ := strings.Cut(rest, "/")
			if kind == kindDesired || kind == kindChunk {
				return false
			}
		}
		return true
	default:
		return false
	}
}

// deviceRest returns what follows "{prefix}/dev/{id}/" in topic, and whether topic starts so.
func (r rules) deviceRest(id, topic string) (string, bool) {
	if !strings.HasPrefix(topic, r.devBase) {
		return "", false
	}
	rest := topic[len(r.devBase):]
	if len(rest) <= len(id) || !strings.HasPrefix(rest, id) || rest[len(id)] != '/' {
		return "", false
	}
	return rest[len(id)+1:], true
}

// Topic kinds for the driftline_hub_mqtt_messages_total label. The set is closed so the label's
// cardinality stays bounded whatever clients publish.
var deviceKinds = map[string]bool{
	"status": true, "heartbeat": true, "data": true, "validation": true, "drift": true,
	"profile": true, "desired": true, "reported": true, "fetch": true, "chunk": true,
	"ack": true, "prediction_drift": true, "performance": true, "prediction_profile": true,
	"sample": true, "sample_part": true, "sample_ack": true,
}

// topicKind names the protocol topic kind of a topic name: "status", "drift", "drift_feature",
// "chunk", "fleet_rollouts", "fleet_drift", ... and "other" for anything outside the protocol.
func (r rules) topicKind(topic string) string {
	if rest, ok := strings.CutPrefix(topic, r.devBase); ok {
		_, rest, ok = strings.Cut(rest, "/") // skip the device id
		if !ok {
			return "other"
		}
		kind, sub, hasSub := strings.Cut(rest, "/")
		switch {
		case !deviceKinds[kind]:
			return "other"
		case kind == "drift" && hasSub && sub != "":
			return "drift_feature"
		case hasSub:
			return "other"
		}
		return kind
	}
	if _, ok := r.modelTopic(topic); ok {
		return "model_chunk"
	}
	if rest, ok := strings.CutPrefix(topic, r.prefix+"/fleet/"); ok {
		kind, _, _ := strings.Cut(rest, "/")
		switch kind {
		case "rollouts":
			return "fleet_rollouts"
		case "drift":
			return "fleet_drift"
		}
	}
	return "other"
}
