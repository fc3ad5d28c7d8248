package broker

import "errors"

var (
	// ErrConfig is returned by New when the configuration cannot work (a missing Authenticator, a
	// TLS certificate without a key, a bad prefix).
	ErrConfig = errors.New("broker: invalid config")
	// ErrClosed is returned by Publish and Subscribe once the broker is closed.
	ErrClosed = errors.New("broker: closed")
	// ErrBadTopic is returned by Publish for an empty topic or one with wildcards, and by Subscribe
	// for a filter that is not a valid MQTT topic filter.
	ErrBadTopic = errors.New("broker: invalid topic")
	// ErrTooLarge is returned by Publish when the payload does not fit the broker's packet size.
	ErrTooLarge = errors.New("broker: payload too large")
	// ErrBadPrincipal is what a connect is refused with when the Authenticator returns a principal
	// that cannot be placed in the ACL (unknown kind, a device id that is not one topic level).
	ErrBadPrincipal = errors.New("broker: invalid principal")
	// ErrBadUser is returned by the Mosquitto writers for a user name or device id that cannot be
	// written safely (empty, control characters, ':' in a password file, a device id that is not
	// one topic level, surrounding spaces).
	ErrBadUser = errors.New("broker: invalid mosquitto user name")
)
