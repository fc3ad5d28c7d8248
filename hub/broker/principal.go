package broker

import "fmt"

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
