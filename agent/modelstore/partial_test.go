package modelstore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// writeRanges writes content(v)'s bytes [from, to) into p in 32 KiB pieces, last piece first.
func writeRanges(t *testing.T, p *Partial, v int, from, to int) {
	t.Helper()
	data := content(v)
	for off := (to - 1) / (32 << 10) * (32 << 10); off >= from; off -= 32 << 10 {
		if err := p.WriteAt(data[off:min(off+32<<10, to)], int64(off)); err != nil {
			t.Fatal(err)
		}
	}
}

// openPartial opens the resumable download of version v's content as version asV.
func openPartial(t *testing.T, s *Store, asV, v int) *Partial {
	t.Helper()
	p, done, err := s.OpenPartial(testModel, asV, manifestDigest(v), fileDigest(v), int64(len(content(v))))
	if err != nil || done {
		t.Fatalf("OpenPartial = %v, %v", done, err)
	}
	return p
}

// TestPartialResume: a partial download written out of order survives a close and a new Store
// (a restart) with its bytes, is resumed only for the same digests and size, is left alone by
// Recover, and becomes a whole, verified version directory on Commit.
func TestPartialResume(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	s := e.store(t, HealthCheck{})
	size := int64(len(content(1)))
	p, done, err := s.OpenPartial(testModel, 1, manifestDigest(1), fileDigest(1), size)
	if err != nil || done || p.Resumed() {
		t.Fatalf("OpenPartial = %v, %v, resumed %v", done, err, p != nil && p.Resumed())
	}
	half := len(content(1)) / 2 / (32 << 10) * (32 << 10)
	writeRanges(t, p, 1, 0, half)
	if err := p.WriteAt([]byte("x"), size); err == nil {
		t.Fatal("WriteAt past the end accepted")
	}
	p.Close()

	// A restart: a new Store, Recover, then the same download again.
	s = e.store(t, HealthCheck{})
	if _, err := s.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	ps, err := s.Partials(testModel)
	if err != nil || len(ps) != 1 || ps[0].Version != 1 || ps[0].FileDigest != fileDigest(1) {
		t.Fatalf("Partials after Recover = %+v, %v", ps, err)
	}
	p, _, err = s.OpenPartial(testModel, 1, manifestDigest(1), fileDigest(1), size)
	if err != nil || !p.Resumed() {
		t.Fatalf("reopen = %v, resumed %v", err, p != nil && p.Resumed())
	}
	got := make([]byte, half)
	if _, err := p.ReadAt(got, 0); err != nil || string(got) != string(content(1)[:half]) {
		t.Fatalf("resumed partial lost its bytes: %v", err)
	}
	if err := p.HashThrough(ctx, int64(half)); err != nil {
		t.Fatal(err)
	}
	writeRanges(t, p, 1, half, len(content(1)))
	if err := p.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Activate(ctx, testModel, 1); err != nil {
		t.Fatal(err)
	}
	checkAtRest(t, s, 1, 0)

	// Already staged: nothing to do.
	if p, done, err := s.OpenPartial(testModel, 1, manifestDigest(1), fileDigest(1), size); err != nil || !done || p != nil {
		t.Fatalf("OpenPartial of a staged version = %v, %v", done, err)
	}
}

// TestPartialFreshForOtherDigests: a partial left for other content, or another size, is
// replaced by an empty one; DropPartials removes all but the one kept.
func TestPartialFreshForOtherDigests(t *testing.T) {
	e := newEnv(t)
	s := e.store(t, HealthCheck{})
	size := int64(len(content(2)))
	p, _, err := s.OpenPartial(testModel, 2, manifestDigest(2), fileDigest(2), size)
	if err != nil {
		t.Fatal(err)
	}
	writeRanges(t, p, 2, 0, int(size))
	p.Close()
	for _, tc := range []struct {
		name     string
		manifest string
		file     string
		size     int64
	}{
		{"other file", manifestDigest(2), fileDigest(3), size},
		{"other manifest", manifestDigest(3), fileDigest(2), size},
		{"other size", manifestDigest(2), fileDigest(2), size + 1},
	} {
		p, _, err := s.OpenPartial(testModel, 2, tc.manifest, tc.file, tc.size)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if p.Resumed() {
			t.Fatalf("%s: resumed a partial for other content", tc.name)
		}
		b := make([]byte, 16)
		if _, err := p.ReadAt(b, 0); err != nil || string(b) != string(make([]byte, 16)) {
			t.Fatalf("%s: new partial is not empty: %q %v", tc.name, b, err)
		}
		p.Close()
	}
	p, _, err = s.OpenPartial(testModel, 3, manifestDigest(3), fileDigest(3), size)
	if err != nil {
		t.Fatal(err)
	}
	p.Close()
	if ps, _ := s.Partials(testModel); len(ps) != 2 {
		t.Fatalf("%d partials, want 2", len(ps))
	}
	if err := s.DropPartials(testModel, 3); err != nil {
		t.Fatal(err)
	}
	if ps, _ := s.Partials(testModel); len(ps) != 1 || ps[0].Version != 3 {
		t.Fatalf("after DropPartials(3): %+v", ps)
	}
}

// TestPartialCommitMismatch: a partial whose bytes do not hash to the file digest is refused
// and deleted, and no version directory appears.
func TestPartialCommitMismatch(t *testing.T) {
	e := newEnv(t)
	s := e.store(t, HealthCheck{})
	p := openPartial(t, s, 1, 1)
	writeRanges(t, p, 2, 0, len(content(1))) // version 2's bytes, same length
	if err := p.Commit(context.Background()); !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("Commit of wrong bytes = %v", err)
	}
	checkAtRest(t, s, 0, 0)
}

// TestBeforeRemove: the versions prune deletes are shown to Options.BeforeRemove first, while
// their files are still there; current and previous are not.
func TestBeforeRemove(t *testing.T) {
	e := newEnv(t)
	var removed []Version
	var keptWith []int
	s, err := Open(e.db.Root().Sub("models"), Options{Dir: e.modelDir, Logger: quiet(), BeforeRemove: func(v Version, kept []Version) {
		if _, err := os.Stat(v.Path); err != nil {
			t.Errorf("BeforeRemove of %d: %v", v.Version, err)
		}
		removed = append(removed, v)
		for _, k := range kept {
			keptWith = append(keptWith, k.Version)
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	for v := 1; v <= 3; v++ {
		if err := install(t, s, v); err != nil {
			t.Fatal(err)
		}
	}
	checkAtRest(t, s, 3, 2)
	if len(removed) != 1 || removed[0].Version != 1 || removed[0].ManifestDigest != manifestDigest(1) ||
		removed[0].Path != filepath.Join(e.modelDir, testModel, "1", ModelFile) {
		t.Fatalf("BeforeRemove saw %+v, want version 1 only", removed)
	}
	if fmt.Sprint(keptWith) != "[3 2]" {
		t.Fatalf("BeforeRemove was told the kept versions are %v, want [3 2]", keptWith)
	}
}

// TestPartialCommitAgain: a Commit killed after writing the marker, before the rename, leaves a
// whole download that is found again and committed once more.
func TestPartialCommitAgain(t *testing.T) {
	e := newEnv(t)
	s := e.store(t, HealthCheck{})
	size := int64(len(content(1)))
	p := openPartial(t, s, 1, 1)
	writeRanges(t, p, 1, 0, int(size))
	// What the killed Commit left: the marker beside the file and the meta file.
	must(t, writeMarker(filepath.Join(p.dir, MarkerFile), Marker{Name: testModel, Version: 1, ManifestDigest: manifestDigest(1), FileDigest: fileDigest(1), Size: size}))
	p.Close()

	if p = openPartial(t, s, 1, 1); !p.Resumed() {
		t.Fatal("a whole download left by a killed Commit was not resumed")
	}
	if err := p.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
	checkWhole(t, s, 1)
	if _, err := os.Stat(filepath.Join(s.versionDir(testModel, 1), partialMetaFile)); !os.IsNotExist(err) {
		t.Fatalf("meta file left in the version directory: %v", err)
	}
}
