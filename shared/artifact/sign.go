package artifact

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// signContext is prepended to the manifest bytes before signing, so that a signature over a
// manifest can never be replayed as a signature over anything else the same key might sign.
const signContext = "driftline manifest signature v1\x00"

// KeyIDPrefix starts every key id.
const KeyIDPrefix = "ed25519:"

// Signature is an ed25519 signature over a manifest's canonical bytes, as carried in the desired
// state and stored with an approved model version. The zero Signature means "unsigned".
type Signature struct {
	// KeyID names the signing key (see KeyID).
	KeyID string `json:"key_id"`
	// Sig is the 64-byte ed25519 signature, standard base64 with padding.
	Sig string `json:"sig"`
}

// IsZero reports whether s carries no signature at all.
func (s Signature) IsZero() bool { return s.KeyID == "" && s.Sig == "" }

// KeyID returns the id of a public key: "ed25519:" and the first 16 hex digits of the SHA-256
// of its 32 raw bytes.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return KeyIDPrefix + hex.EncodeToString(sum[:8])
}

// Sign signs manifest (its canonical bytes) with priv.
func Sign(priv ed25519.PrivateKey, manifest []byte) Signature {
	return SignStatement(priv, signContext, manifest)
}

// SignStatement signs msg under context (a constant naming what msg is, ending in a NUL byte):
// a signature made for one context never verifies for another, so a key that signs approvals,
// desired states and manifests cannot be tricked into one being taken for another.
func SignStatement(priv ed25519.PrivateKey, context string, msg []byte) Signature {
	buf := make([]byte, 0, len(context)+len(msg))
	buf = append(append(buf, context...), msg...)
	pub := priv.Public().(ed25519.PublicKey)
	return Signature{KeyID: KeyID(pub), Sig: base64.StdEncoding.EncodeToString(ed25519.Sign(priv, buf))}
}

// KeyRing is a set of trusted public keys indexed by key id. The zero KeyRing trusts nothing.
type KeyRing struct {
	keys map[string]ed25519.PublicKey
}

// NewKeyRing returns a key ring trusting keys.
func NewKeyRing(keys ...ed25519.PublicKey) KeyRing {
	r := KeyRing{keys: make(map[string]ed25519.PublicKey, len(keys))}
	for _, k := range keys {
		r.keys[KeyID(k)] = k
	}
	return r
}

// Len returns the number of trusted keys.
func (r KeyRing) Len() int { return len(r.keys) }

// Verify checks that sig is a valid signature over manifest (canonical bytes) by a key in r.
// It returns nil, or an error wrapping ErrUnsigned (zero sig), ErrUnknownKey (key id not
// trusted) or ErrBadSignature (malformed or not matching).
func (r KeyRing) Verify(manifest []byte, sig Signature) error {
	return r.VerifyStatement(signContext, manifest, sig)
}

// Has reports whether r trusts the key with id.
func (r KeyRing) Has(id string) bool { _, ok := r.keys[id]; return ok }

// IDs returns the ids of the trusted keys, sorted.
func (r KeyRing) IDs() []string {
	out := make([]string, 0, len(r.keys))
	for id := range r.keys {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

// VerifyStatement checks that sig is a valid signature over msg made with SignStatement under
// context by a key in r; errors as Verify.
func (r KeyRing) VerifyStatement(context string, msg []byte, sig Signature) error {
	if sig.IsZero() {
		return ErrUnsigned
	}
	pub, ok := r.keys[sig.KeyID]
	if !ok {
		return fmt.Errorf("%w: %.80q", ErrUnknownKey, sig.KeyID)
	}
	raw, err := base64.StdEncoding.Strict().DecodeString(sig.Sig)
	if err != nil || len(raw) != ed25519.SignatureSize {
		return fmt.Errorf("%w: key %s: signature is not %d bytes of base64", ErrBadSignature, sig.KeyID, ed25519.SignatureSize)
	}
	buf := make([]byte, 0, len(context)+len(msg))
	buf = append(append(buf, context...), msg...)
	if !ed25519.Verify(pub, buf, raw) {
		return fmt.Errorf("%w: key %s", ErrBadSignature, sig.KeyID)
	}
	return nil
}

// Verify checks sig over manifest against the trusted keys; see KeyRing.Verify.
func Verify(trusted []ed25519.PublicKey, manifest []byte, sig Signature) error {
	return NewKeyRing(trusted...).Verify(manifest, sig)
}

// PublicKeyBase64 returns the 32 raw bytes of pub in standard base64: the one-line form agent
// configs use for trusted keys.
func PublicKeyBase64(pub ed25519.PublicKey) string {
	return base64.StdEncoding.EncodeToString(pub)
}

// ParsePublicKey accepts either form of an ed25519 public key: a PEM "PUBLIC KEY" block (PKIX)
// or the standard base64 of its 32 raw bytes (surrounding space ignored). Anything else is
// ErrBadKey.
func ParsePublicKey(b []byte) (ed25519.PublicKey, error) {
	s := strings.TrimSpace(string(b))
	if strings.HasPrefix(s, "-----BEGIN") {
		block, rest := pem.Decode([]byte(s))
		if block == nil || block.Type != "PUBLIC KEY" || len(strings.TrimSpace(string(rest))) != 0 {
			return nil, fmt.Errorf("%w: want one PEM PUBLIC KEY block", ErrBadKey)
		}
		k, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrBadKey, err)
		}
		pub, ok := k.(ed25519.PublicKey)
		if !ok {
			return nil, fmt.Errorf("%w: %T is not an ed25519 key", ErrBadKey, k)
		}
		return pub, nil
	}
	raw, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil || len(raw) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%w: want PEM or base64 of %d bytes", ErrBadKey, ed25519.PublicKeySize)
	}
	return ed25519.PublicKey(raw), nil
}

// LoadOrGenerateKey returns the ed25519 private key in the PKCS#8 PEM file at path. When the
// file does not exist it generates a key and writes it there with mode 0600, atomically: a
// concurrent caller either creates the file or loads the one the other wrote. An existing file
// readable or writable by group or others is refused (ErrKeyPermissions).
func LoadOrGenerateKey(path string) (ed25519.PrivateKey, error) {
	priv, err := loadKey(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return priv, err
	}
	_, priv, err = ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate signing key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("marshal signing key: %w", err)
	}
	data := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	tmp, err := os.CreateTemp(filepath.Dir(path), ".signing-key-*")
	if err != nil {
		return nil, fmt.Errorf("write signing key %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("write signing key %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("write signing key %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("write signing key %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("write signing key %s: %w", path, err)
	}
	// Link, unlike Rename, never replaces: if another process won the race, load its key.
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return loadKey(path)
		}
		return nil, fmt.Errorf("write signing key %s: %w", path, err)
	}
	return priv, nil
}

// LoadKey reads the ed25519 private key in the PKCS#8 PEM file at path, refusing a file readable
// or writable by group or others (ErrKeyPermissions). A missing file wraps fs.ErrNotExist.
func LoadKey(path string) (ed25519.PrivateKey, error) { return loadKey(path) }

// loadKey reads a PKCS#8 PEM ed25519 private key, refusing loose permissions.
func loadKey(path string) (ed25519.PrivateKey, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read signing key: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read signing key %s: %w", path, err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%w: %s has mode %v, want 0600", ErrKeyPermissions, path, st.Mode().Perm())
	}
	data, err := io.ReadAll(io.LimitReader(f, 64<<10))
	if err != nil {
		return nil, fmt.Errorf("read signing key %s: %w", path, err)
	}
	return parsePrivateKey(path, data)
}

// parsePrivateKey decodes one PEM "PRIVATE KEY" block holding an ed25519 PKCS#8 key.
func parsePrivateKey(path string, data []byte) (ed25519.PrivateKey, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("%w: %s: want a PEM PRIVATE KEY block (PKCS#8)", ErrBadKey, path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrBadKey, path, err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%w: %s: %T is not an ed25519 key", ErrBadKey, path, k)
	}
	return priv, nil
}
