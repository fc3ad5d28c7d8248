// Package seal encrypts the secrets the hub must replicate but that whoever reads its Raft log,
// snapshots or backups should not get in clear: today the webhook secrets, which every node
// needs in clear to sign deliveries (any node can become the leader that delivers).
//
// The cluster has one seal key, 32 random bytes in DATA/seal.key (mode 0600) on every node and
// never in the replicated state: the first node of a new cluster makes it, a joining node gets it
// from the leader with its promotion (the same channel as its node token). A value is sealed with
// AES-256-GCM by the node that receives it from the API, before it enters a Raft command, and
// opened by the node that uses it. A backup or a copied snapshot without the key file holds only
// sealed values. See docs/security.md.
package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// FileName is the seal key's file in the data dir.
const FileName = "seal.key"

// prefix starts every sealed value: "sealed:v1:KEYID:BASE64(nonce || ciphertext)".
const prefix = "sealed:v1:"

// aad binds a sealed value to its use, so a sealed value cannot be moved to another purpose.
const aad = "driftline sealed secret v1"

var (
	// ErrWrongKey means a value was sealed under another key than the one held.
	ErrWrongKey = errors.New("seal: sealed under another key")
	// ErrNoKey means a sealed value met a node without a seal key.
	ErrNoKey = errors.New("seal: this node holds no seal key (copy DATA/seal.key from another node)")
	// ErrCorrupt means a sealed value does not decode or authenticate.
	ErrCorrupt = errors.New("seal: damaged sealed value")
)

// Key is a seal key. The zero Key is not usable; a nil *Key seals nothing (Seal returns the
// value as is) and opens only values that are not sealed.
type Key struct {
	raw  []byte
	id   string
	aead cipher.AEAD
}

// New returns the key of 32 raw bytes.
func New(raw []byte) (*Key, error) {
	if len(raw) != 32 {
		return nil, fmt.Errorf("seal: key of %d bytes, want 32", len(raw))
	}
	block, err := aes.NewCipher(raw)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(raw)
	return &Key{raw: append([]byte(nil), raw...), id: hex.EncodeToString(sum[:6]), aead: aead}, nil
}

// Generate returns a new random key.
func Generate() (*Key, error) {
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return nil, err
	}
	return New(raw)
}

// Parse reads a key's text form (base64 of the 32 bytes).
func Parse(text string) (*Key, error) {
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(text))
	if err != nil {
		return nil, fmt.Errorf("seal: key is not base64: %w", err)
	}
	return New(raw)
}

// Text returns the key's text form, as stored in the file and sent to a joining node.
func (k *Key) Text() string { return base64.StdEncoding.EncodeToString(k.raw) }

// ID names the key (not secret): the first 12 hex digits of the SHA-256 of its bytes.
func (k *Key) ID() string { return k.id }

// Load reads the key file at path; a missing file wraps fs.ErrNotExist. A file readable or
// writable by group or others is refused.
func Load(path string) (*Key, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("seal: %s has mode %v, want 0600", path, st.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(string(b))
}

// Write stores k at path (mode 0600), replacing the file atomically.
func (k *Key) Write(path string) error {
	if err := os.WriteFile(path+".tmp", []byte(k.Text()+"\n"), 0o600); err != nil {
		return err
	}
	return os.Rename(path+".tmp", path)
}

// LoadOrGenerate loads the key at path, or, when the file is missing and create is set, makes
// one and writes it. Without create a missing file gives (nil, nil): the node seals nothing.
func LoadOrGenerate(path string, create bool) (*Key, error) {
	k, err := Load(path)
	if errors.Is(err, fs.ErrNotExist) {
		if !create {
			return nil, nil
		}
		if k, err = Generate(); err != nil {
			return nil, err
		}
		return k, k.Write(path)
	}
	return k, err
}

// IsSealed reports whether v is a sealed value.
func IsSealed(v string) bool { return strings.HasPrefix(v, prefix) }

// Seal returns plain sealed under k; with a nil k, plain itself.
func (k *Key) Seal(plain string) (string, error) {
	if k == nil {
		return plain, nil
	}
	nonce := make([]byte, k.aead.NonceSize(), k.aead.NonceSize()+len(plain)+k.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	ct := k.aead.Seal(nonce, nonce, []byte(plain), []byte(aad))
	return prefix + k.id + ":" + base64.RawStdEncoding.EncodeToString(ct), nil
}

// Open returns the plain value of v: v itself when it is not sealed (stored before sealing was
// on), else its decryption under k (ErrNoKey for a nil k, ErrWrongKey, ErrCorrupt).
func (k *Key) Open(v string) (string, error) {
	if !IsSealed(v) {
		return v, nil
	}
	if k == nil {
		return "", ErrNoKey
	}
	id, body, ok := strings.Cut(strings.TrimPrefix(v, prefix), ":")
	if !ok {
		return "", ErrCorrupt
	}
	if id != k.id {
		return "", fmt.Errorf("%w: value of key %s, this node holds %s", ErrWrongKey, id, k.id)
	}
	ct, err := base64.RawStdEncoding.DecodeString(body)
	if err != nil || len(ct) < k.aead.NonceSize() {
		return "", ErrCorrupt
	}
	plain, err := k.aead.Open(nil, ct[:k.aead.NonceSize()], ct[k.aead.NonceSize():], []byte(aad))
	if err != nil {
		return "", ErrCorrupt
	}
	return string(plain), nil
}
