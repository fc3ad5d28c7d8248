package broker

import (
	"fmt"
	"strings"
)

// PrincipalKind says what an authenticated MQTT client is, and so which rules of the ACL apply.
type PrincipalKind int

const (
	// Unknown is the zero kind; the broker refuses a principal of this kind at connect.
	Unknown PrincipalKind = iota
	// Device is an edge agent (or its firmware) that authenticated with its device id and token. It
	// may publish and subscribe only under "{prefix}/dev/{its id}/", and may never publish its
	// `desired` or `chunk` topics.
	Device
	// Viewer holds a viewer API token: it may subscribe anywhere under "{prefix}/" and publish nothing.
	Viewer
	// Hub is the hub's own credential: it may do everything. No API token maps to it: the hub
	// publishes through the broker's inline client, and a person cannot log in as it.
	Hub
	// Admin holds an admin API token: it may subscribe anywhere and publish anything except a
	// device's `desired` and `chunk` topics, which only the hub publishes (a person with an admin
	// token cannot hand a device a desired state or a chunk).
	Admin
)

// String returns the lower-case name of the kind ("device", "viewer", "hub", "admin", "unknown").
func (k PrincipalKind) String() string {
	switch k {
	case Device:
		return "device"
	case Viewer:
		return "viewer"
	case Hub:
		return "hub"
	case Admin:
		return "admin"
	default:
		return "unknown"
	}
}

// Principal is who an MQTT client is, as the Authenticator established at connect. ID is the device
// id for a Device (it must be one valid MQTT topic level: no '/', '+', '#' or NUL), and a name used
// only in logs for the other kinds.
type Principal struct {
	Kind PrincipalKind
	ID   string
}

// String returns "kind:id", for logs.
func (p Principal) String() string { return fmt.Sprintf("%s:%s", p.Kind, p.ID) }

// Authenticator checks the credentials an MQTT client presents at connect. The hub implements it:
// devices by id and token, viewers by API token, and the hub's own credential.
//
// Authenticate returns the principal, or an error when the credentials are not valid (the broker
// then refuses the connection with "bad user name or password" and never says why to the client).
// It is called on the connecting client's goroutine, once per connection attempt, and must be safe
// for concurrent use. It must stop accepting a device's token before the hub calls Broker.Revoke
// for that device: Revoke re-checks connections that were being authenticated while it ran.
type Authenticator interface {
	Authenticate(username string, password []byte) (Principal, error)
}

// ModelAuthorizer is an Authenticator that also says whether a device may read the shared chunk
// topic of a model, "{prefix}/model/{name}/chunk": whether its desired state names the model.
// Without it no device may. The broker asks at subscribe and, cached for ModelGrantTTL, at
// delivery: a device whose desired state no longer names the model stops receiving its chunks
// within that time. MayFetchModel must be safe for concurrent use.
type ModelAuthorizer interface {
	MayFetchModel(deviceID, model string) bool
}

// Client-id namespaces. A session belongs to the principal that may use its client id, so no
// principal can hold, take over or squat on another's session:
//
//   - a device uses its id, or its id, ':' and a suffix ("d1", "d1:sim"); device ids never
//     contain ':' nor start with '@';
//   - a viewer token uses "@viewer:" and the token id, optionally ':' and a suffix
//     ("@viewer:3f2a9c1b", "@viewer:3f2a9c1b:grafana");
//   - an admin token (the Admin kind) likewise with "@admin:".
//
// Every device client id starts with a device id and every token client id with '@', so the
// namespaces are disjoint by construction.
const (
	viewerIDPrefix = "@viewer:"
	hubIDPrefix    = "@admin:"
)

// ClientIDFor returns the client id p connects with: its namespace's root, followed by ':' and
// suffix when suffix is not empty.
func ClientIDFor(p Principal, suffix string) string {
	root := p.ID
	switch p.Kind {
	case Viewer:
		root = viewerIDPrefix + p.ID
	case Admin, Hub:
		root = hubIDPrefix + p.ID
	}
	if suffix == "" {
		return root
	}
	return root + ":" + suffix
}

// ClientIDAllowed reports whether p may connect with clientID: the root of its namespace, or the
// root, ':' and a non-empty suffix.
func ClientIDAllowed(p Principal, clientID string) bool {
	root := ClientIDFor(p, "")
	if p.Kind == Unknown || p.ID == "" || !strings.HasPrefix(clientID, root) {
		return false
	}
	rest := clientID[len(root):]
	return rest == "" || (len(rest) > 1 && rest[0] == ':')
}
