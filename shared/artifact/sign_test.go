package artifact

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func newKey(t *testing.T) ed25519.PrivateKey {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return priv
}

func pubOf(k ed25519.PrivateKey) ed25519.PublicKey { return k.Public().(ed25519.PublicKey) }

func TestVerify(t *testing.T) {
	hub, other := newKey(t), newKey(t)
	manifest := []byte(manifestCases[0].raw)
	good := Sign(hub, manifest)
	flipped := []byte(good.Sig)
	flipped[3] ^= 'A' ^ 'B'
	cases := []struct {
		name     string
		trusted  []ed25519.PublicKey
		manifest []byte
		sig      Signature
		want     error
	}{
		{"good", []ed25519.PublicKey{pubOf(hub)}, manifest, good, nil},
		{"good among several keys", []ed25519.PublicKey{pubOf(other), pubOf(hub)}, manifest, good, nil},
		{"unsigned", []ed25519.PublicKey{pubOf(hub)}, manifest, Signature{}, ErrUnsigned},
		{"untrusted key", []ed25519.PublicKey{pubOf(other)}, manifest, good, ErrUnknownKey},
		{"no trusted keys", nil, manifest, good, ErrUnknownKey},
		{"other manifest", []ed25519.PublicKey{pubOf(hub)}, append([]byte(nil), manifestCases[1].raw...), good, ErrBadSignature},
		{"signature altered", []ed25519.PublicKey{pubOf(hub)}, manifest, Signature{good.KeyID, string(flipped)}, ErrBadSignature},
		{"signature not base64", []ed25519.PublicKey{pubOf(hub)}, manifest, Signature{good.KeyID, "!!"}, ErrBadSignature},
		{"signature short", []ed25519.PublicKey{pubOf(hub)}, manifest, Signature{good.KeyID, base64.StdEncoding.EncodeToString([]byte("short"))}, ErrBadSignature},
		{"key id swapped", []ed25519.PublicKey{pubOf(hub), pubOf(other)}, manifest, Signature{KeyID(pubOf(other)), good.Sig}, ErrBadSignature},
		{"raw ed25519 signature without context", []ed25519.PublicKey{pubOf(hub)}, manifest,
			Signature{good.KeyID, base64.StdEncoding.EncodeToString(ed25519.Sign(hub, manifest))}, ErrBadSignature},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := Verify(tc.trusted, tc.manifest, tc.sig)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err %v, want %v", err, tc.want)
			}
			if err != nil {
				t.Log(err)
			}
		})
	}
}

func TestKeyID(t *testing.T) {
	k := pubOf(newKey(t))
	id := KeyID(k)
	if !strings.HasPrefix(id, KeyIDPrefix) || len(id) != len(KeyIDPrefix)+16 {
		t.Fatalf("KeyID %q", id)
	}
	if KeyID(pubOf(newKey(t))) == id {
		t.Fatal("two keys share an id")
	}
}

func TestParsePublicKey(t *testing.T) {
	k := pubOf(newKey(t))
	pem := encodePublicKey(k)
	cases := []struct {
		name string
		in   string
		ok   bool
	}{
		{"PEM", string(pem), true},
		{"PEM with spaces", "\n  " + string(pem) + "\n", true},
		{"base64", PublicKeyBase64(k), true},
		{"base64 with newline", PublicKeyBase64(k) + "\n", true},
		{"empty", "", false},
		{"base64 of 31 bytes", base64.StdEncoding.EncodeToString(k[:31]), false},
		{"two PEM blocks", string(pem) + string(pem), false},
		{"private key PEM", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", false},
		{"garbage PEM", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParsePublicKey([]byte(tc.in))
			if tc.ok != (err == nil) {
				t.Fatalf("err %v, want ok=%v", err, tc.ok)
			}
			if err != nil {
				if !errors.Is(err, ErrBadKey) {
					t.Fatalf("err %v does not wrap ErrBadKey", err)
				}
				return
			}
			if !got.Equal(k) {
				t.Fatal("parsed a different key")
			}
		})
	}
}

func FuzzParsePublicKey(f *testing.F) {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	f.Add(encodePublicKey(pubOf(priv)))
	f.Add([]byte(PublicKeyBase64(pubOf(priv))))
	f.Add([]byte("-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----"))
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := ParsePublicKey(b)
		if err != nil {
			if !errors.Is(err, ErrBadKey) {
				t.Fatalf("error %v wraps no sentinel", err)
			}
			return
		}
		if len(k) != ed25519.PublicKeySize {
			t.Fatalf("accepted a %d-byte key", len(k))
		}
	})
}

func TestLoadOrGenerateKey(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "signing.key")
	k1, err := LoadOrGenerateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, want 0600", st.Mode().Perm())
	}
	k2, err := LoadOrGenerateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if !k1.Equal(k2) {
		t.Fatal("second load returned a different key")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("temporary files left behind: %v", entries)
	}

	bad := []struct {
		name    string
		content string
		mode    os.FileMode
		want    error
	}{
		{"loose mode", "", 0o644, ErrKeyPermissions},
		{"not PEM", "hello", 0o600, ErrBadKey},
		{"public key PEM", string(encodePublicKey(pubOf(k1))), 0o600, ErrBadKey},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "k")
			if err := os.WriteFile(p, []byte(tc.content), tc.mode); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(p, tc.mode); err != nil {
				t.Fatal(err)
			}
			_, err := LoadOrGenerateKey(p)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err %v, want %v", err, tc.want)
			}
			t.Log(err)
		})
	}
	t.Run("missing directory", func(t *testing.T) {
		if _, err := LoadOrGenerateKey(filepath.Join(t.TempDir(), "no", "such", "k")); err == nil {
			t.Fatal("no error for a key in a missing directory")
		}
	})
}

func TestLoadOrGenerateKeyConcurrent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "signing.key")
	const n = 8
	keys := make([]ed25519.PrivateKey, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { keys[i], errs[i] = LoadOrGenerateKey(path) })
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if !keys[i].Equal(keys[0]) {
			t.Fatal("concurrent callers got different keys")
		}
	}
}

// encodePublicKey returns pub as a PEM "PUBLIC KEY" block (PKIX, as openssl writes it), one
// of the two forms ParsePublicKey accepts.
func encodePublicKey(pub ed25519.PublicKey) []byte {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil { // only for a key of the wrong length, a programming error
		panic(fmt.Sprintf("marshal ed25519 public key: %v", err))
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}
