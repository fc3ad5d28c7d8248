package artifact

import "errors"

// Errors returned by this package. Callers test them with errors.Is; every returned error wraps
// one of these with the context (chunk index, digest, path) that makes it actionable.
var (
	// ErrBadDigest means a digest string is not "sha256:" followed by 64 lowercase hex digits.
	ErrBadDigest = errors.New("artifact: malformed digest")
	// ErrBadManifest means a manifest failed validation: bad digests, sizes that are not positive,
	// do not fit the chunk bounds or do not add up, too many chunks, or an unknown algorithm.
	ErrBadManifest = errors.New("artifact: invalid manifest")
	// ErrNotCanonical means manifest bytes decoded to a valid manifest but are not its canonical
	// encoding, so their digest would not identify it.
	ErrNotCanonical = errors.New("artifact: manifest bytes are not canonical")
	// ErrChunkSize means a chunk handed to Assemble does not have the size its manifest states.
	ErrChunkSize = errors.New("artifact: chunk size mismatch")
	// ErrChunkDigest means a chunk's bytes do not hash to the digest its manifest states.
	ErrChunkDigest = errors.New("artifact: chunk digest mismatch")
	// ErrFileDigest means the reassembled file does not hash to the manifest's whole-file digest.
	ErrFileDigest = errors.New("artifact: file digest mismatch")
	// ErrUnsigned means a manifest carries no signature where one is required.
	ErrUnsigned = errors.New("artifact: manifest is not signed")
	// ErrUnknownKey means a signature names a key that is not in the trusted key ring.
	ErrUnknownKey = errors.New("artifact: signature by an untrusted key")
	// ErrBadSignature means a signature is malformed or does not verify against the manifest.
	ErrBadSignature = errors.New("artifact: bad signature")
	// ErrBadKey means a key file or encoded key cannot be parsed or is not an ed25519 key.
	ErrBadKey = errors.New("artifact: bad key")
	// ErrKeyPermissions means a private key file is readable or writable by group or others.
	ErrKeyPermissions = errors.New("artifact: private key file permissions too open")
)
