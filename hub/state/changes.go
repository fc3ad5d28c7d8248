package state

import (
	"github.com/dgraph-io/badger/v4"

	"github.com/driftline/driftline/hub/command"
)

// ChangeKind says what a Change is about.
type ChangeKind uint8

// Kinds of changes the state machine reports (Change).
const (
	// ChangeDesired: device Device's desired state (spec) is now at revision Rev.
	ChangeDesired ChangeKind = iota + 1
	// ChangeStatus: device Device's status (reported state, health, outputs, presence) changed;
	// Online and LastSeen are its presence after the change.
	ChangeStatus
	// ChangeReports: device Device's report cursor was stored (numbered reports to acknowledge).
	ChangeReports
	// ChangeDeviceAdded: device Device was created (its token is new).
	ChangeDeviceAdded
	// ChangeDeviceToken: device Device has a new token (re-keyed): sessions made with the old end.
	ChangeDeviceToken
	// ChangeDeviceRemoved: device Device is gone.
	ChangeDeviceRemoved
	// ChangeRollout: rollout Rollout changed (created, or a transition by Action).
	ChangeRollout
	// ChangeKeys: the root of trust or the signing key set changed.
	ChangeKeys
	// ChangeTokenRevoked: API token Token was deleted.
	ChangeTokenRevoked
)

var changeNames = [...]string{"", "desired", "status", "reports", "device_added", "device_token", "device_removed", "rollout", "keys", "token_revoked"}

func (k ChangeKind) String() string {
	if int(k) < len(changeNames) {
		return changeNames[k]
	}
	return "unknown"
}

// Change is one typed change a committed command made, as the store's change feed delivers it
// (hub/store Change.Event) to every consumer on every node, after commit, in commit order.
// Consumers read the current state for the details; a Change names what to look at.
type Change struct {
	Kind    ChangeKind `json:"kind"`
	Device  string     `json:"device,omitempty"`
	Rev     int64      `json:"rev,omitempty"`
	Rollout string     `json:"rollout,omitempty"`
	// Action is the rollout transition (RolloutTransition.Action), "create" for a new rollout.
	Action string `json:"action,omitempty"`
	Token  string `json:"token,omitempty"`
	// Online and LastSeen are, for a ChangeStatus, the device's replicated presence after the
	// command: each node's protocol service keeps them to decide which heartbeats need a
	// replicated write (hub/protocol telemetry.go) without reading the device.
	Online   bool  `json:"online,omitempty"`
	LastSeen int64 `json:"last_seen,omitempty"`
}

// emitter collects the changes of one command; a nil emitter drops them.
type emitter func(any)

func (e emitter) add(c Change) {
	if e != nil {
		e(c)
	}
}

// ApplyChanges is Apply that also reports the command's changes to emit (hub/store's
// ChangeProcessor). A command that returns an error emits nothing the store keeps; a retried
// request (its result stored under fsm/req/) emits nothing: its changes were reported when it
// was applied.
func (p Processor) ApplyChanges(txn *badger.Txn, index uint64, env command.Envelope, emit func(any)) (any, error) {
	var got []Change
	res, err := p.apply(txn, index, env, func(c any) { got = append(got, c.(Change)) })
	if err != nil {
		return nil, err
	}
	for _, c := range got {
		emit(c)
	}
	return res, nil
}

// changesOf adds the changes a command's result alone describes (the ones made deep inside a
// command, such as a wave's desired states, are emitted where they are written).
func changesOf(em emitter, env command.Envelope, res any, audited bool) {
	switch v := res.(type) {
	case DesiredResult:
		if audited { // an unchanged desired state writes nothing and has no audit note
			em.add(Change{Kind: ChangeDesired, Device: v.ID, Rev: v.Rev})
		}
	case Device:
		switch env.Type &^ command.IgnoreIfUnknown {
		case command.TypeDeviceCreate:
			em.add(Change{Kind: ChangeDeviceAdded, Device: v.ID})
		case command.TypeDeviceRekey:
			if audited {
				em.add(Change{Kind: ChangeDeviceToken, Device: v.ID})
			}
		case command.TypeDeviceDelete:
			em.add(Change{Kind: ChangeDeviceRemoved, Device: v.ID})
		}
	case Rollout:
		action := "create"
		if t := env.Type &^ command.IgnoreIfUnknown; t == command.TypeRolloutTransition || t == command.TypeRolloutTransitionPart {
			var t RolloutTransition
			if env.DecodePayload(&t) == nil {
				action = t.Action
			}
		}
		em.add(Change{Kind: ChangeRollout, Rollout: v.ID, Action: action})
	case Trust:
		em.add(Change{Kind: ChangeKeys})
	case SigningKey:
		if audited {
			em.add(Change{Kind: ChangeKeys})
		}
	case Token:
		if env.Type&^command.IgnoreIfUnknown == command.TypeTokenDelete {
			em.add(Change{Kind: ChangeTokenRevoked, Token: v.ID})
		}
	}
}
