package reconcile

// Outcome is how one model of a desired revision ended.
type Outcome int

const (
	// OutcomeActive: the model runs the desired version (state active, or rolled_back when it
	// went back to it).
	OutcomeActive Outcome = iota + 1
	// OutcomeFailed: the version was refused (signature, manifest, digest, name, revoked) or its
	// health check failed: final for the revision, retrying would meet the same bytes.
	OutcomeFailed
	// OutcomeRetry: the pull or the activation failed for a reason that may pass (a stall, too
	// many attempts, a store or disk error): the revision is tried again after a backoff
	// (Fetch.Retry doubling to retryMax) and at the next start.
	OutcomeRetry
)

func (o Outcome) String() string {
	switch o {
	case OutcomeActive:
		return "active"
	case OutcomeFailed:
		return "failed"
	case OutcomeRetry:
		return "retry"
	}
	return "unknown"
}

// Revision is what acting on one desired state came to: each of its models' outcome.
type Revision struct {
	Rev    uint64
	Models map[string]Outcome
}

// RetryAfter reports whether a model of the revision is to be tried again: the revision is then
// not recorded as acted on.
func (r Revision) RetryAfter() bool {
	for _, o := range r.Models {
		if o == OutcomeRetry {
			return true
		}
	}
	return false
}

// failure is the outcome of a pull or activation that failed with err.
func failure(err error) Outcome {
	if transient(err) {
		return OutcomeRetry
	}
	return OutcomeFailed
}
