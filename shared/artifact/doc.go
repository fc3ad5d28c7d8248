// Package artifact names model files by content: it cuts a file into content-defined chunks
// (FastCDC, average 64 KiB), describes it with a Manifest (the chunk digests in order and the
// whole file's SHA-256), reassembles and verifies it from chunks, and signs and verifies
// manifests with ed25519.
//
// The hub calls Split on an upload and stores each chunk once by digest; the agent asks Missing
// which chunks it lacks, fetches those, and calls Assemble, which checks every chunk and the
// whole file. A manifest is signed over its canonical bytes (Manifest.Canonical); the agent
// checks the signature with a KeyRing of trusted keys before it fetches a single chunk.
//
// Digests are strings "sha256:" followed by 64 lowercase hex digits (DigestOf, ParseDigest).
// See DESIGN.md for the invariants.
package artifact
