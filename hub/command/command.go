// Package command defines the one envelope in which every change to the hub's replicated state
// travels through Raft, and the one place that encodes and decodes it.
//
// Wire form of a Raft log entry: byte 0 is the format version (currently 1), bytes 1-2 the command
// Type (big endian), the rest the JSON envelope.
//
// Unknown types: a Type with the IgnoreIfUnknown bit set is skipped by an older node that does not
// know it (rolling upgrades: only for commands whose absence cannot make the state diverge). Any
// other unknown type (Decode returns ErrUnknownType) means the entry was written by a newer build:
// the hub's store stops the node at that entry rather than skip it and diverge from its peers, and
// its leader never proposes a type it does not know. Bytes that do not decode (a short entry, an
// unknown format version, bad JSON) are a proposer's bug confined to that entry: the store answers
// it with an error and goes on.
//
// Time, ids and randomness travel inside the command: the leader fills Envelope.Time when it
// proposes, so Apply never reads the clock.
package command

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
)

// Type identifies what a command does.
type Type uint16

// IgnoreIfUnknown marks a command that an older node may skip if it does not know the type.
const IgnoreIfUnknown Type = 0x8000

// Command types. Values are stored in the Raft log: never renumber, only append.
const (
	TypeUnknown Type = iota
	// TypeBatch carries several envelopes in one Raft entry (group commit). Payload: Batch.
	TypeBatch
	// TypeNodeSet records a cluster node's addresses. Payload: NodeSet.
	TypeNodeSet
	// TypeNodeRemove forgets a cluster node. Payload: NodeRemove.
	TypeNodeRemove
	TypeTokenCreate
	TypeTokenDelete
	TypeDatasetCreate
	TypeDatasetVersionCreate
	TypeModelCreate
	TypeChunksPut
	TypeModelVersionCreate
	TypeModelVersionApprove
	TypeModelVersionDeprecate
	TypeAliasSet
	TypeTagSet
	TypeDeviceCreate
	TypeDevicePatch
	TypeDeviceDelete
	TypeDeviceDesiredSet
	TypeDeviceTelemetry
	TypeOpenLineage
	TypeRolloutCreate
	TypeRolloutTransition
	TypeSigningKeyAdd
	// TypeTrustSet installs the next root of trust and the online keys. Payload: state.TrustSet.
	// Proposed with IgnoreIfUnknown, so that an older node of a cluster being upgraded skips
	// it instead of stopping (it then keeps signing with its own key until upgraded).
	TypeTrustSet
	// TypeDeviceRekey replaces a device's token, keeping the device (its desired revision
	// history included). Payload: state.DeviceRekey.
	TypeDeviceRekey
	// TypeChunksSweep deletes chunks that no model version lists and that were stored before a
	// time (aborted uploads). Payload: state.ChunksSweep.
	TypeChunksSweep
	// TypeWebhookCreate registers a webhook. Payload: state.WebhookCreate.
	TypeWebhookCreate
	// TypeWebhookDelete removes a webhook and its pending deliveries. Payload: state.WebhookDelete.
	TypeWebhookDelete
	// TypeWebhookTest queues a test event for one webhook. Payload: state.WebhookTest.
	TypeWebhookTest
	// TypeWebhookAttempt records the outcome of one delivery attempt. Payload: state.WebhookAttempt.
	TypeWebhookAttempt
	// TypeModelVersionOutputSet attaches an output reference to a model version. Payload:
	// state.ModelVersionOutputSet.
	TypeModelVersionOutputSet
	// TypeSampleStage keeps a device's sample of a drifted window until it joins a candidate
	// dataset version. Payload: state.SampleStage.
	TypeSampleStage
	// TypeCandidateCreate registers a candidate dataset version from staged samples. Payload:
	// state.CandidateCreate.
	TypeCandidateCreate
	// TypeRetentionPrune deletes closed lineage runs edges older than a cutoff and audit entries
	// up to an exported checkpoint. Payload: state.RetentionPrune.
	TypeRetentionPrune
	// TypeChunksOrphanMark marks as pending, with the command's time, every chunk that no model
	// version lists and that carries no pending mark: what aborted uploads left before uploads
	// marked their chunks. ChunksSweep then deletes them after its grace period. Payload:
	// state.ChunksOrphanMark. Not ignorable (skipping it would let states diverge): a leader
	// proposes it only when every node knows it (cluster.PathInfo).
	TypeChunksOrphanMark
	// TypeRolloutCreatePart and TypeRolloutTransitionPart are the parts of a rollout command
	// split into bounded parts proposed as one entry (hub/state Processor.Split, issue 18).
	// Payloads: state.RolloutCreate, state.RolloutTransition with Part set. Types of their own,
	// not a field of the whole commands', so that a node of an older build stops at them
	// (applier.halt) instead of applying a part as a whole rollout: finish the upgrade before
	// rolling out to more than 1,000 devices.
	TypeRolloutCreatePart
	TypeRolloutTransitionPart
	typeEnd // sentinel: first unassigned value
)

// Known reports whether t (without the IgnoreIfUnknown bit) is a type this build understands.
func (t Type) Known() bool {
	b := t &^ IgnoreIfUnknown
	return b > TypeUnknown && b < typeEnd
}

// MaxType is the highest command type this build knows (a leader proposes a type that a node
// of an older build would stop at only when every node knows it).
func MaxType() Type { return typeEnd - 1 }

// Version is the format version written as byte 0 of every entry.
const Version byte = 1

// Envelope is one command.
type Envelope struct {
	// Type says what the command does; it is encoded outside the JSON.
	Type Type `json:"-"`
	// ID is a request id chosen by the proposer; the state machine uses it to make a retried
	// command idempotent.
	ID string `json:"id,omitempty"`
	// Time is Unix milliseconds, set by the proposer. Apply uses it instead of the clock.
	Time int64 `json:"ts"`
	// Actor is the identity on whose behalf the command runs (token name or device id).
	Actor string `json:"actor,omitempty"`
	// Payload is the type-specific body.
	Payload json.RawMessage `json:"payload,omitempty"`
}

// Errors returned by Decode.
var (
	// ErrShort means the entry is shorter than its 3-byte header.
	ErrShort = errors.New("command: entry too short")
	// ErrVersion means the entry has a format version this build does not know.
	ErrVersion = errors.New("command: unknown format version")
	// ErrUnknownType means the type is unknown and not marked IgnoreIfUnknown. A committed entry
	// of such a type stops the node that cannot apply it (see the package doc); a processor
	// returns it for a type it does not handle.
	ErrUnknownType = errors.New("command: unknown type")
	// ErrSkippable means the type is unknown but marked IgnoreIfUnknown: skip the entry.
	ErrSkippable = errors.New("command: unknown type marked ignore-if-unknown")
)

// New builds an envelope whose payload is the JSON of body.
func New(t Type, id string, ts int64, actor string, body any) (Envelope, error) {
	p, err := json.Marshal(body)
	if err != nil {
		return Envelope{}, fmt.Errorf("encode %v payload: %w", t, err)
	}
	return Envelope{Type: t, ID: id, Time: ts, Actor: actor, Payload: p}, nil
}

// Encode returns the Raft log form of e.
func Encode(e Envelope) ([]byte, error) {
	body, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("encode command: %w", err)
	}
	out := make([]byte, 3, 3+len(body))
	out[0] = Version
	binary.BigEndian.PutUint16(out[1:3], uint16(e.Type))
	return append(out, body...), nil
}

// Decode parses a Raft log entry. It returns ErrSkippable (with the type filled in) for an unknown
// type marked IgnoreIfUnknown and ErrUnknownType for any other unknown type.
func Decode(b []byte) (Envelope, error) {
	if len(b) < 3 {
		return Envelope{}, ErrShort
	}
	if b[0] != Version {
		return Envelope{}, fmt.Errorf("%w %d", ErrVersion, b[0])
	}
	t := Type(binary.BigEndian.Uint16(b[1:3]))
	if !t.Known() {
		if t&IgnoreIfUnknown != 0 {
			return Envelope{Type: t}, ErrSkippable
		}
		return Envelope{Type: t}, fmt.Errorf("%w %d", ErrUnknownType, uint16(t))
	}
	var e Envelope
	if err := json.Unmarshal(b[3:], &e); err != nil {
		return Envelope{}, fmt.Errorf("decode command type %d: %w", uint16(t), err)
	}
	e.Type = t
	return e, nil
}

// DecodePayload unmarshals e's payload into v.
func (e Envelope) DecodePayload(v any) error {
	if err := json.Unmarshal(e.Payload, v); err != nil {
		return fmt.Errorf("decode payload of command type %d: %w", uint16(e.Type), err)
	}
	return nil
}

// Batch is the payload of TypeBatch: envelopes applied in order, each with its own result.
type Batch struct {
	// Entries are Encode'd envelopes.
	Entries [][]byte `json:"entries"`
}

// NodeSet is the payload of TypeNodeSet.
type NodeSet struct {
	ID   string `json:"id"`
	Raft string `json:"raft"`
	HTTP string `json:"http"`
}

// NodeRemove is the payload of TypeNodeRemove.
type NodeRemove struct {
	ID string `json:"id"`
}
