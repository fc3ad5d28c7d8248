package wire

import (
	"fmt"

	"github.com/driftline/driftline/shared/artifact"
)

// Desired is the retained PREFIX/dev/{id}/desired message: what the hub wants the device to run.
// It is the hub's message to the agent, so it nests; it replaces the previous one whole.
type Desired struct {
	Header
	// Rev increases with every change of the device's desired state, from 1. An agent ignores
	// a Desired whose Rev is not above the last one it acted on.
	Rev uint64 `json:"rev"`
	// Models lists every model the device should run; a model absent here should not run.
	Models []DesiredModel `json:"models"`
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
	// Signature is the hub's signature over the manifest's canonical bytes. Agents refuse an
	// unsigned manifest (artifact.ErrUnsigned); the decoder leaves that decision to them.
	Signature artifact.Signature `json:"signature"`
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
	if len(m.Signature.KeyID) > MaxNameLen || len(m.Signature.Sig) > 2*MaxNameLen {
		return bad("signature", "too long")
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
