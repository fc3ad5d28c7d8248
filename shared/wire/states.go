package wire

// State is where one device stands on one model (SPEC section 5), as it reports it in
// Reported.Models and as rollouts count devices.
type State string

// Per-device states. An agent moves notified → downloading → activating → active, or ends in
// failed; rolled_back means it went back to the previous version on the hub's order or after a
// failed health check. pending is the hub's own state for a device not yet told.
const (
	StatePending     State = "pending"
	StateNotified    State = "notified"
	StateDownloading State = "downloading"
	StateActivating  State = "activating"
	StateActive      State = "active"
	StateFailed      State = "failed"
	StateRolledBack  State = "rolled_back"
)

// States lists every state in lifecycle order.
var States = []State{StatePending, StateNotified, StateDownloading, StateActivating, StateActive, StateFailed, StateRolledBack}

// Valid reports whether s is one of States.
func (s State) Valid() bool {
	for _, v := range States {
		if s == v {
			return true
		}
	}
	return false
}
