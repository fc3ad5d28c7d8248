package seal

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSealOpen(t *testing.T) {
	k, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	const secret = "whsec_0123456789abcdef"
	v, err := k.Seal(secret)
	if err != nil {
		t.Fatal(err)
	}
	if !IsSealed(v) || strings.Contains(v, secret) {
		t.Fatalf("sealed value %q", v)
	}
	if got, err := k.Open(v); err != nil || got != secret {
		t.Fatalf("open: %q %v", got, err)
	}
	if got, err := k.Open(secret); err != nil || got != secret {
		t.Fatalf("a value stored before sealing opens as itself: %q %v", got, err)
	}
	other, _ := Generate()
	if _, err := other.Open(v); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("another key: %v", err)
	}
	var none *Key
	if _, err := none.Open(v); !errors.Is(err, ErrNoKey) {
		t.Fatalf("no key: %v", err)
	}
	if p, _ := none.Seal(secret); p != secret {
		t.Fatal("a nil key sealed")
	}
	tampered := v[:len(v)-2] + "AA"
	if tampered == v {
		tampered = v[:len(v)-2] + "BB"
	}
	if _, err := k.Open(tampered); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("tampered: %v", err)
	}

	dir := t.TempDir()
	path := filepath.Join(dir, FileName)
	if k, err := LoadOrGenerate(path, false); k != nil || err != nil {
		t.Fatalf("missing file without create: %v %v", k, err)
	}
	made, err := LoadOrGenerate(path, true)
	if err != nil {
		t.Fatal(err)
	}
	again, err := LoadOrGenerate(path, true)
	if err != nil || again.ID() != made.ID() {
		t.Fatalf("reload: %v %v", again, err)
	}
	os.Chmod(path, 0o644)
	if _, err := Load(path); err == nil {
		t.Fatal("a world-readable key file was loaded")
	}
}
