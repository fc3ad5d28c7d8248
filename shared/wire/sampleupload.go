package wire

import (
	"fmt"

	"github.com/driftline/driftline/shared/artifact"
)

// Sample uploads (agent to hub). A sample of a drifted window (Sample, JSON) can be larger than
// one MQTT message should be, so the agent sends its bytes as chunk frames (the layout the hub
// answers fetches with, frame.go) on PREFIX/dev/{id}/sample_part: the frame's request id is the
// upload id, its digest the SHA-256 of the whole Sample JSON, and parts are cut at MaxPartSize
// (DataFrames). The hub collects the parts of one upload in any order (Object), checks the
// digest, stages the sample and answers with a SampleAck on PREFIX/dev/{id}/sample_ack. The
// agent keeps the upload until that ack and sends it again when none comes; the hub answers a
// repeated, already stored upload with the same ack and stores it once.

// MaxSampleUpload bounds the Sample JSON of one upload: the largest object a chunk frame
// carries.
const MaxSampleUpload = MaxObjectSize

// Sample upload results (SampleAck.Status).
const (
	// SampleStored: the hub staged the sample in the replicated state.
	SampleStored = "stored"
	// SampleRefused: the hub will never stage it (bad sample, collection not allowed, a model
	// the device does not run); the agent forgets it.
	SampleRefused = "refused"
)

// SampleAck is the PREFIX/dev/{id}/sample_ack message, from the hub: the upload UploadID whose
// whole bytes hash to Digest was stored or refused.
type SampleAck struct {
	Header
	UploadID string `json:"upload_id"`
	Digest   string `json:"digest"`
	Status   string `json:"status"`
	// Error says why a sample was refused.
	Error string `json:"error,omitempty"`
}

// Validate checks the header, the upload id, the digest and the status.
func (a SampleAck) Validate() error {
	if err := a.Header.Validate(); err != nil {
		return err
	}
	if err := ValidateRequestID(a.UploadID); err != nil {
		return fmt.Errorf("upload_id: %w", err)
	}
	if !artifact.ValidDigest(a.Digest) {
		return bad("digest", "%.80q is not a digest", a.Digest)
	}
	if a.Status != SampleStored && a.Status != SampleRefused {
		return bad("status", "must be %s or %s, got %q", SampleStored, SampleRefused, a.Status)
	}
	return nil
}

// DecodeSampleAck parses and validates a sample ack payload.
func DecodeSampleAck(b []byte) (SampleAck, error) { return decode[SampleAck](b) }

// SamplePart returns PREFIX/dev/{id}/sample_part.
func (t Topics) SamplePart(id string) string { return t.dev(id, "sample_part") }

// SampleAck returns PREFIX/dev/{id}/sample_ack.
func (t Topics) SampleAck(id string) string { return t.dev(id, "sample_ack") }
