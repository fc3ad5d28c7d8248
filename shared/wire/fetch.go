package wire

import (
	"fmt"

	"github.com/driftline/driftline/shared/artifact"
)

// FetchRequest is the PREFIX/dev/{id}/fetch message: the agent asks the hub for objects by
// digest (chunks, or a manifest, contract or profile). The hub answers on PREFIX/dev/{id}/chunk
// with one or more frames per digest carrying RequestID, or a not-found frame.
type FetchRequest struct {
	Header
	// RequestID ties the answers to this request (ValidateRequestID; a UUID fits).
	RequestID string `json:"request_id"`
	// Digests lists 1..MaxFetchDigests distinct digests.
	Digests []string `json:"digests"`
	// Shared, when set, names the model whose shared chunk topic (Topics.ModelChunk) the agent
	// is subscribed to, acknowledged by the broker before this request was sent: the hub may
	// then answer the request's chunks of that model there, once for every device pulling it,
	// instead of on the device's own chunk topic. Agents without it, or a hub that does not
	// know it, use the per-device topic.
	Shared string `json:"shared,omitempty"`
	// SharedSub identifies that subscription (a fresh value per subscribe, ValidateRequestID):
	// the hub counts a device as listening since the first request naming it.
	SharedSub string `json:"shared_sub,omitempty"`
}

// Validate checks the request id and that the digests are well formed, distinct and few enough.
func (f FetchRequest) Validate() error {
	if err := f.Header.Validate(); err != nil {
		return err
	}
	if err := ValidateRequestID(f.RequestID); err != nil {
		return fmt.Errorf("request_id: %w", err)
	}
	if len(f.Digests) < 1 || len(f.Digests) > MaxFetchDigests {
		return bad("digests", "must list 1..%d digests, got %d", MaxFetchDigests, len(f.Digests))
	}
	if f.Shared != "" || f.SharedSub != "" {
		if err := ValidateName("shared model", f.Shared); err != nil {
			return fmt.Errorf("shared: %w", err)
		}
		if err := ValidateRequestID(f.SharedSub); err != nil {
			return fmt.Errorf("shared_sub: %w", err)
		}
	}
	seen := make(map[string]bool, len(f.Digests))
	for i, d := range f.Digests {
		if !artifact.ValidDigest(d) {
			return bad(fmt.Sprintf("digests[%d]", i), "%.80q is not a digest", d)
		}
		if seen[d] {
			return bad(fmt.Sprintf("digests[%d]", i), "%s listed twice", d)
		}
		seen[d] = true
	}
	return nil
}

// DecodeFetchRequest parses and validates a fetch payload.
func DecodeFetchRequest(b []byte) (FetchRequest, error) { return decode[FetchRequest](b) }
