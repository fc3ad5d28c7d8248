package drift

import "errors"

// Sentinel errors of the drift package; returned errors wrap them with the feature concerned.
var (
	// ErrMismatch is returned when the current profile lacks a reference column or has it with
	// another kind.
	ErrMismatch = errors.New("drift: profiles do not describe the same columns")
	// ErrUnknownFeature is returned when options name a feature the reference does not have.
	ErrUnknownFeature = errors.New("drift: unknown feature")
	// ErrMethod is returned for an unknown method name, or one that does not apply to the
	// feature's kind (ks, wasserstein and psi need a numeric feature).
	ErrMethod = errors.New("drift: method does not apply")
	// ErrThreshold is returned for a threshold that is not finite, or a share outside (0, 1].
	ErrThreshold = errors.New("drift: bad threshold")
	// ErrTooFewWindows is returned by calibration with fewer than two windows to learn from.
	ErrTooFewWindows = errors.New("drift: calibration needs at least two windows")
)
