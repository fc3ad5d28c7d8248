package fleetdrift

import "errors"

// Sentinel errors of the fleet drift service.
var (
	// ErrNoReference: the model version has no training dataset version with a reference
	// profile, so nothing can be compared.
	ErrNoReference = errors.New("drift: no reference profile")
	// ErrBadProfile: a device's profile message is not a well-formed profile.
	ErrBadProfile = errors.New("drift: bad profile message")
	// ErrUnknownDevice: the profile came from a device the hub does not know.
	ErrUnknownDevice = errors.New("drift: unknown device")
	// ErrNoModel: no active model of the device has a reference the profile fits.
	ErrNoModel = errors.New("drift: no active model fits the profile")
	// ErrUnknownFeature: the model version's reference does not score the named feature.
	ErrUnknownFeature = errors.New("drift: unknown feature")
)
