package wire

import (
	"crypto/ed25519"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/driftline/driftline/shared/artifact"
)

// Desired is the retained PREFIX/dev/{id}/desired message: what the hub wants the device to run.
// It is the hub's message to the agent, so it nests; it replaces the previous one whole.
//
// The hub signs it for its device with an online key of the cluster's root of trust (see
// SignedBytes: device, rev, issue and expiry times, every model field); an agent acts only on
// a desired state signed for it, unexpired, with a rev above the last it acted on.
type Desired struct {
	Header
	// Rev increases with every change of the device's desired state, from 1. An agent ignores
	// a Desired whose Rev is not above the last one it acted on.
	Rev uint64 `json:"rev"`
	// Models lists every model the device should run; a model absent here should not run.
	Models []DesiredModel `json:"models"`
	// IssuedAt is when the hub signed this message, Unix milliseconds. The hub signs the same
	// rev again before it expires (a refresh), so a device can tell silence from a freeze.
	IssuedAt int64 `json:"issued_at,omitempty"`
	// Expires is when this message stops being valid, Unix milliseconds.
	Expires int64 `json:"expires,omitempty"`
	// Signature is the hub's signature over SignedBytes.
	Signature artifact.Signature `json:"signature,omitzero"`
	// Revoked names ("NAME@VERSION", VersionRef) the versions of the listed models that were
	// withdrawn (deprecated): the agent keeps them and never activates those versions again,
	// whatever later message names them. Covered by the signature.
	Revoked []string `json:"revoked,omitempty"`
	// Roots are the cluster's root metadata documents after version 1, oldest first (TUF
	// root.json, see shared/trust): how agents learn a rotated key set. Each one is signed by
	// the root keys of the one before it; the Desired signature does not cover them.
	Roots []json.RawMessage `json:"roots,omitempty"`
}

// MaxRoots is the most root documents a Desired carries; MaxRevoked the most revoked digests.
const (
	MaxRoots   = 64
	MaxRevoked = 1024
)

// desiredContext prefixes every desired-state signature (artifact.SignStatement).
const desiredContext = "driftline desired v1\x00"

// SignedBytes is what the desired state's signature covers: the device id, rev, issue and
// expiry times and every field of every model (both signatures included), each
// length-prefixed in a fixed order.
func (d Desired) SignedBytes() []byte {
	b := make([]byte, 0, 128+len(d.Models)*384)
	str := func(s string) {
		b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
		b = append(b, s...)
	}
	num := func(n uint64) { b = binary.BigEndian.AppendUint64(b, n) }
	str(d.DeviceID)
	num(d.Rev)
	num(uint64(d.IssuedAt))
	num(uint64(d.Expires))
	num(uint64(len(d.Models)))
	for _, m := range d.Models {
		str(m.Name)
		num(uint64(m.Version))
		str(m.ManifestDigest)
		num(uint64(m.Size))
		str(m.LegacySignature.KeyID)
		str(m.LegacySignature.Sig)
		str(m.ApprovalSignature.KeyID)
		str(m.ApprovalSignature.Sig)
		str(m.ContractDigest)
		str(m.ProfileDigest)
		str(m.Dataset)
		num(uint64(m.DatasetVersion))
		str(m.RolloutID)
	}
	num(uint64(len(d.Revoked)))
	for _, r := range d.Revoked {
		str(r)
	}
	return b
}

// Sign sets d's signature, made with priv over SignedBytes.
func (d *Desired) Sign(priv ed25519.PrivateKey) {
	d.Signature = artifact.SignStatement(priv, desiredContext, d.SignedBytes())
}

// Verify checks d's signature against the keys of r (errors as artifact.KeyRing.Verify).
func (d Desired) Verify(r artifact.KeyRing) error {
	return r.VerifyStatement(desiredContext, d.SignedBytes(), d.Signature)
}

// VersionRef names a model version as "NAME@VERSION".
func VersionRef(name string, version int) string { return name + "@" + strconv.Itoa(version) }

// Approval is what the approval signature of m binds (artifact.Approval).
func (m DesiredModel) Approval() artifact.Approval {
	return artifact.Approval{Name: m.Name, Version: m.Version, ManifestDigest: m.ManifestDigest,
		ContractDigest: m.ContractDigest, ProfileDigest: m.ProfileDigest, Dataset: m.Dataset, DatasetVersion: m.DatasetVersion,
		OutputDigest: m.OutputDigest}
}

// DesiredModel is one model version a device should run, with what it needs to fetch and
// check it.
type DesiredModel struct {
	// Name is the model's name.
	Name string `json:"name"`
	// Version is the model version, from 1.
	Version int `json:"version"`
	// ManifestDigest names the artifact manifest (its canonical bytes), fetched like a chunk.
	ManifestDigest string `json:"manifest_digest"`
	// Size is the artifact's size in bytes, for progress and disk checks.
	Size int64 `json:"size,omitempty"`
	// LegacySignature is the approving leader's signature, by its node key (DATA/signing.key),
	// over the manifest's canonical bytes (artifact.Sign): what the field "signature" meant
	// before approvals were bound, kept so agents of earlier releases, which verify it against
	// their trusted_keys, keep working against this hub (docs/upgrading.md). Agents of this
	// release ignore it.
	LegacySignature artifact.Signature `json:"signature"`
	// ApprovalSignature is the approval signature over Approval(): name, version, manifest
	// digest, contract and profile digests, the dataset version and the output digest (when
	// the version has an output reference), by an online key of the
	// cluster's root of trust. Agents refuse a model without one (artifact.ErrUnsigned); the
	// decoder leaves that decision to them.
	ApprovalSignature artifact.Signature `json:"approval,omitzero"`
	// ContractDigest names the data contract of the training dataset version, if any.
	ContractDigest string `json:"contract_digest,omitempty"`
	// ProfileDigest names the reference profile of the training dataset version, if any.
	ProfileDigest string `json:"profile_digest,omitempty"`
	// Dataset and DatasetVersion name the training dataset version the contract and profile
	// belong to.
	Dataset        string `json:"dataset,omitempty"`
	DatasetVersion int    `json:"dataset_version,omitempty"`
	// RolloutID is the rollout that set this version, empty for a pin.
	RolloutID string `json:"rollout_id,omitempty"`
	// OutputDigest names the version's output reference (shared/outputs.Reference JSON: output
	// contract, prediction profile, reference performance), if any.
	OutputDigest string `json:"output_digest,omitempty"`
}

// Validate checks rev, each model's name (unique), version and digests.
func (d Desired) Validate() error {
	if err := d.Header.Validate(); err != nil {
		return err
	}
	if d.Rev < 1 {
		return bad("rev", "must be at least 1")
	}
	if d.IssuedAt < 0 || d.Expires < 0 {
		return bad("expires", "times must not be negative")
	}
	if len(d.Signature.KeyID) > MaxNameLen || len(d.Signature.Sig) > 2*MaxNameLen {
		return bad("signature", "too long")
	}
	if len(d.Roots) > MaxRoots {
		return bad("roots", "%d root documents, at most %d", len(d.Roots), MaxRoots)
	}
	if len(d.Revoked) > MaxRevoked {
		return bad("revoked", "%d digests, at most %d", len(d.Revoked), MaxRevoked)
	}
	for i, r := range d.Revoked {
		name, v, ok := strings.Cut(r, "@")
		n, err := strconv.Atoi(v)
		if !ok || err != nil || n < 1 || ValidateName("model", name) != nil {
			return bad(fmt.Sprintf("revoked[%d]", i), "%.80q is not NAME@VERSION", r)
		}
	}
	if len(d.Models) > MaxModels {
		return bad("models", "%d models, at most %d", len(d.Models), MaxModels)
	}
	seen := make(map[string]bool, len(d.Models))
	for i, m := range d.Models {
		if err := m.validate(); err != nil {
			return fmt.Errorf("models[%d]: %w", i, err)
		}
		if seen[m.Name] {
			return bad(fmt.Sprintf("models[%d].name", i), "%q listed twice", m.Name)
		}
		seen[m.Name] = true
	}
	return nil
}

func (m DesiredModel) validate() error {
	if err := checkRef("name", m.Name, "version", m.Version, false); err != nil {
		return err
	}
	if err := checkRef("dataset", m.Dataset, "dataset_version", m.DatasetVersion, true); err != nil {
		return err
	}
	if !artifact.ValidDigest(m.ManifestDigest) {
		return bad("manifest_digest", "%.80q is not a digest", m.ManifestDigest)
	}
	for _, c := range []struct{ f, d string }{{"contract_digest", m.ContractDigest}, {"profile_digest", m.ProfileDigest}, {"output_digest", m.OutputDigest}} {
		if c.d != "" && !artifact.ValidDigest(c.d) {
			return bad(c.f, "%.80q is not a digest", c.d)
		}
	}
	if err := checkNonNeg("size", m.Size); err != nil {
		return err
	}
	for _, s := range []struct {
		f   string
		sig artifact.Signature
	}{{"signature", m.LegacySignature}, {"approval", m.ApprovalSignature}} {
		if len(s.sig.KeyID) > MaxNameLen || len(s.sig.Sig) > 2*MaxNameLen {
			return bad(s.f, "too long")
		}
	}
	if m.RolloutID != "" {
		if err := ValidateName("rollout_id", m.RolloutID); err != nil {
			return err
		}
	}
	return nil
}

// DecodeDesired parses and validates a desired payload.
func DecodeDesired(b []byte) (Desired, error) { return decode[Desired](b) }

// Reported is the retained PREFIX/dev/{id}/reported message: what the device runs.
type Reported struct {
	Header
	// Rev is the last Desired.Rev the agent has acted on (0 before the first).
	Rev uint64 `json:"rev"`
	// AgentVersion is the agent's build version.
	AgentVersion string `json:"agent_version,omitempty"`
	// Models holds, per model name, where the device stands on it.
	Models map[string]ReportedModel `json:"models"`
	// DesiredStale is true while the device has heard no valid desired state for longer than
	// the last one's expiry (a frozen or cut-off feed); it keeps running what it has.
	DesiredStale bool `json:"desired_stale,omitempty"`
	// RootExpired is true while the root of trust the device holds has expired: it refuses
	// desired states until a renewed root arrives, and keeps running what it has.
	RootExpired bool `json:"root_expired,omitempty"`
}

// ReportedModel is one model's state on one device.
type ReportedModel struct {
	// Active is the version running, or nil (JSON null) when none is.
	Active *int `json:"active"`
	// Previous is the version that ran before Active, kept on disk for rollback, or nil.
	Previous *int `json:"previous"`
	// Target is the version the agent is moving to while downloading or activating.
	Target int `json:"target,omitempty"`
	// State is where the device stands on this model.
	State State `json:"state"`
	// LastError is the last failure's message, empty when the last attempt succeeded.
	LastError string `json:"last_error,omitempty"`
	// RolloutID is the rollout the current target or active version came from.
	RolloutID string `json:"rollout_id,omitempty"`
	// BytesDone and BytesTotal report download progress while downloading.
	BytesDone  int64 `json:"bytes_done,omitempty"`
	BytesTotal int64 `json:"bytes_total,omitempty"`
	// Since is when State was entered, Unix milliseconds.
	Since int64 `json:"since,omitempty"`
}

// Validate checks model names, states, versions and lengths.
func (r Reported) Validate() error {
	if err := r.Header.Validate(); err != nil {
		return err
	}
	if err := checkText("agent_version", r.AgentVersion); err != nil {
		return err
	}
	if len(r.Models) > MaxModels {
		return bad("models", "%d models, at most %d", len(r.Models), MaxModels)
	}
	for name, m := range r.Models {
		if err := ValidateName("model", name); err != nil {
			return fmt.Errorf("models: %w", err)
		}
		if err := m.validate(); err != nil {
			return fmt.Errorf("models.%s: %w", name, err)
		}
	}
	return nil
}

func (m ReportedModel) validate() error {
	if !m.State.Valid() {
		return bad("state", "unknown state %.40q", m.State)
	}
	for _, c := range []struct {
		f string
		v *int
	}{{"active", m.Active}, {"previous", m.Previous}} {
		if c.v != nil && *c.v < 1 {
			return bad(c.f, "must be null or at least 1, got %d", *c.v)
		}
	}
	if m.Target < 0 {
		return bad("target", "must not be negative, got %d", m.Target)
	}
	if err := checkText("last_error", m.LastError); err != nil {
		return err
	}
	if m.RolloutID != "" {
		if err := ValidateName("rollout_id", m.RolloutID); err != nil {
			return err
		}
	}
	if m.BytesDone < 0 || m.BytesTotal < 0 || (m.BytesTotal > 0 && m.BytesDone > m.BytesTotal) {
		return bad("bytes_done", "%d of %d", m.BytesDone, m.BytesTotal)
	}
	return checkNonNeg("since", m.Since)
}

// DecodeReported parses and validates a reported payload.
func DecodeReported(b []byte) (Reported, error) { return decode[Reported](b) }
