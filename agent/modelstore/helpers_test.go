package modelstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/driftline/driftline/agent/devicedb"
	"github.com/driftline/driftline/shared/artifact"
)

const testModel = "anomaly-detector"

// content is version v's file: 96 KiB that differ per version (three 32 KiB writes).
func content(v int) []byte {
	var b bytes.Buffer
	for i := 0; b.Len() < 96<<10; i++ {
		fmt.Fprintf(&b, "model %d weights line %d\n", v, i)
	}
	return b.Bytes()
}

func fileDigest(v int) string     { return artifact.DigestOf(content(v)) }
func manifestDigest(v int) string { return artifact.DigestOf([]byte(fmt.Sprint("manifest ", v))) }

// writer returns a Stage write function that copies data in 32 KiB writes.
func writer(data []byte) func(io.Writer) error {
	return func(w io.Writer) error {
		for off := 0; off < len(data); off += 32 << 10 {
			if _, err := w.Write(data[off:min(off+32<<10, len(data))]); err != nil {
				return err
			}
		}
		return nil
	}
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// sh returns a health check running script with /bin/sh.
func sh(t *testing.T, script string) HealthCheck {
	t.Helper()
	p, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh on this machine")
	}
	return HealthCheck{Argv: []string{p, "-c", script}, Timeout: 10 * time.Second}
}

// env is one test's model directory and state database.
type env struct {
	modelDir, stateDir string
	db                 *devicedb.DB
}

func newEnv(t *testing.T) *env {
	t.Helper()
	root := t.TempDir()
	e := &env{modelDir: filepath.Join(root, "models"), stateDir: filepath.Join(root, "state")}
	e.open(t)
	return e
}

func (e *env) open(t *testing.T) {
	t.Helper()
	db, err := devicedb.Open(e.stateDir)
	if err != nil {
		t.Fatal(err)
	}
	e.db = db
	t.Cleanup(func() { _ = db.Close() })
}

func (e *env) close(t *testing.T) {
	t.Helper()
	if err := e.db.Close(); err != nil {
		t.Fatal(err)
	}
}

func (e *env) store(t *testing.T, h HealthCheck) *Store {
	t.Helper()
	s, err := Open(e.db.Root().Sub("models"), Options{Dir: e.modelDir, Health: h, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func install(t *testing.T, s *Store, v int) error {
	t.Helper()
	return s.Install(context.Background(), testModel, v, manifestDigest(v), fileDigest(v), writer(content(v)))
}

// checkAtRest asserts the invariant and the tidiness of a model directory at rest: current (when
// wantCur > 0) points at version wantCur, whose directory verifies and whose file is exactly that
// version's bytes; previous is wantPrev (0: absent); nothing else is on disk; no journal is left.
func checkAtRest(t *testing.T, s *Store, wantCur, wantPrev int) {
	t.Helper()
	modelDir := filepath.Join(s.Dir(), testModel)
	for link, want := range map[string]int{CurrentLink: wantCur, PreviousLink: wantPrev} {
		got, err := readLink(modelDir, link)
		if err != nil || got != want {
			t.Fatalf("%s -> %d (%v), want %d", link, got, err, want)
		}
	}
	if wantCur > 0 {
		checkWhole(t, s, wantCur)
		b, err := os.ReadFile(s.CurrentPath(testModel))
		if err != nil || !bytes.Equal(b, content(wantCur)) {
			t.Fatalf("current/model is not version %d's file: %v", wantCur, err)
		}
	}
	entries, err := os.ReadDir(modelDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	want := map[string]bool{}
	for _, v := range []int{wantCur, wantPrev} {
		if v > 0 {
			want[fmt.Sprint(v)] = true
		}
	}
	if wantCur > 0 {
		want[CurrentLink] = true
	}
	if wantPrev > 0 {
		want[PreviousLink] = true
	}
	if len(names) != len(want) {
		t.Fatalf("model dir holds %v, want exactly %v", names, want)
	}
	for _, n := range names {
		if !want[n] {
			t.Fatalf("model dir holds %v, want exactly %v", names, want)
		}
	}
	if _, pending, err := s.loadJournal(testModel); err != nil || pending {
		t.Fatalf("journal pending %v (%v)", pending, err)
	}
}

// checkWhole asserts that version v's directory verifies deeply.
func checkWhole(t *testing.T, s *Store, v int) {
	t.Helper()
	m, err := verifyDir(s.versionDir(testModel, v), testModel, v, true)
	if err != nil {
		t.Fatalf("version %d does not verify: %v", v, err)
	}
	if m.FileDigest != fileDigest(v) || m.ManifestDigest != manifestDigest(v) {
		t.Fatalf("version %d marker %+v", v, m)
	}
}

func contains(err error, s string) bool { return err != nil && strings.Contains(err.Error(), s) }

// Install is Stage followed by Activate.
func (s *Store) Install(ctx context.Context, name string, v int, manifestDigest, fileDigest string, write func(io.Writer) error) error {
	if err := s.Stage(ctx, name, v, manifestDigest, fileDigest, write); err != nil {
		return err
	}
	return s.Activate(ctx, name, v)
}

// SwitchBack activates the previous version of name (health check included).
func (s *Store) SwitchBack(ctx context.Context, name string) error {
	prev, err := s.Previous(name)
	if err != nil {
		return err
	}
	return s.Activate(ctx, name, prev.Version)
}
