package state

import "errors"

// Domain errors returned by Apply as a command's result and by the read functions. The API layer
// maps them to HTTP status codes; they are deterministic, so every node returns the same one.
var (
	// ErrNotFound means the named object does not exist.
	ErrNotFound = errors.New("not found")
	// ErrExists means an object with that name or id already exists.
	ErrExists = errors.New("already exists")
	// ErrConflict means the command contradicts the current state (e.g. approving a deprecated
	// version, a second approval by the registering identity under four-eyes).
	ErrConflict = errors.New("conflict")
	// ErrInvalid means the command's payload is malformed or refers to something invalid.
	ErrInvalid = errors.New("invalid")
)
