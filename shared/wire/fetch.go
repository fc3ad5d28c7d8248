package wire

import (
	"fmt"
	"time"

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

// The agents' fetch policy towards a model's shared chunk topic: one contract for the agent's
// fetcher (agent/reconcile), the hub's fan-out (hub/protocol/shared.go), which must publish
// before agents give up on it, and the load tool (firmware-sim/loadgen), which must wait as
// agents do or its simulated devices ask per device sooner than real ones would.
const (
	// DefaultFetchTimeout is the agent's default request timeout (config fetch.timeout): how
	// long a request on the device's own topic waits for its frames before it is asked again.
	DefaultFetchTimeout = 10 * time.Second
	// SharedListenQuiet is how many request timeouts a pull listening on the shared topic
	// before it holds a pull slot (fleet mode) waits without a chunk from there before it asks
	// on its own topic.
	SharedListenQuiet = 4
	// MaxSharedHold is the longest the hub holds a shared publish after the first device asked
	// for it (gathering the wave's devices into one publish): well under
	// SharedDeadline(DefaultFetchTimeout), leaving the rest for the request's way to the hub
	// and the frames' way back through a loaded hub and broker.
	MaxSharedHold = 8 * time.Second
)

// SharedDeadline returns how long a request naming a shared subscription waits for its frames
// when requests time out after timeout, before what it did not bring is asked again on the
// device's own topic (twice the timeout: the hub holds shared publishes to gather a wave). Every
// shared frame that brings the pull an object it wanted starts the wait again: while the
// wave's publishes keep coming, nothing is asked per device.
func SharedDeadline(timeout time.Duration) time.Duration { return 2 * timeout }

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
