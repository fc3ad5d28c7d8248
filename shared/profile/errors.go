package profile

import "errors"

// Sentinel errors of the profile package. Callers match them with errors.Is; every returned
// error wraps one of them with the column or field that failed.
var (
	// ErrRowShape is returned by Add when a row does not have one value per column.
	ErrRowShape = errors.New("profile: row length differs from column count")
	// ErrValueKind is returned by Add when a value's kind does not fit its column's kind
	// (a string in a numeric column, a number in a categorical one).
	ErrValueKind = errors.New("profile: value kind does not fit column kind")
	// ErrIncompatible is returned by Merge when the two profiles describe different columns
	// or were built with different sketch parameters.
	ErrIncompatible = errors.New("profile: profiles are not mergeable")
	// ErrCorrupt is returned by Decode for bytes that are not a well-formed profile.
	ErrCorrupt = errors.New("profile: corrupt encoding")
	// ErrVersion is returned by Decode for an encoding version this code does not know.
	ErrVersion = errors.New("profile: unknown encoding version")
	// ErrUnknownColumn is returned when a column name is not in the profile.
	ErrUnknownColumn = errors.New("profile: unknown column")
)
