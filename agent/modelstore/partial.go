package modelstore

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/driftline/driftline/shared/artifact"
)

const (
	// partialPrefix starts the directory of a version being downloaded ("PREFIX" + VERSION):
	// it survives restarts so that a download resumes, and prune and Recover leave it.
	partialPrefix = ".partial-"
	// partialMetaFile, inside a partial directory, is a Marker naming what the file will be.
	// It is written without a sync: if a crash loses it, the download starts over.
	partialMetaFile = ".partial"
	// hashBlock is how much HashThrough reads at a time.
	hashBlock = 1 << 20
)

// Partial is a model file being written, in any order, before it becomes a version
// directory. Bytes go in with WriteAt; HashThrough hashes the file's prefix as it completes, and
// Commit hashes the rest, keeps the file only if it hashes to the file digest, and moves it into
// place as MODELDIR/NAME/VERSION (whole, synced, with its marker). Nothing links to a Partial:
// the invariant on current does not depend on what it holds.
//
// A resumable Partial (OpenPartial) lives in MODELDIR/NAME/.partial-VERSION and is found again
// after a crash or a stop; its bytes are then whatever earlier runs wrote (Resumed), unverified,
// and the caller checks them before it relies on them. Stage's Partial is a .tmp- directory
// that Recover deletes.
//
// WriteAt and ReadAt are safe for concurrent use; HashThrough and Commit must be called from one
// goroutine, after the writes of the bytes they cover.
type Partial struct {
	s       *Store
	m       Marker // Size < 0: not known until Commit (Stage)
	dir     string
	f       *os.File
	resumed bool

	written atomic.Int64 // bytes written since open
	flushed atomic.Int64 // of those, how many had their writeback started
	wrote   atomic.Bool

	h      hash.Hash
	hashed int64
}

// hashBufs holds HashThrough's read buffers between calls: a Partial waits for its chunks far
// longer than it hashes, and a fleet of agents in one process holds hundreds at once (issue 18:
// a buffer each was a MiB per pull listening for its wave).
var hashBufs = sync.Pool{New: func() any { b := make([]byte, hashBlock); return &b }}

// OpenPartial returns the resumable download of name@v: the one an earlier run left in
// MODELDIR/NAME/.partial-V when it was for the same manifest, file digest and size (Resumed
// then reports true), else a new one whose file has size bytes (unwritten ranges read as zeros).
// If name@v is already staged with these digests, done is true and p nil. A version in use with
// other content is ErrConflict, as for Stage. Partials of other versions are left alone
// (DropPartials removes them).
func (s *Store) OpenPartial(name string, v int, manifestDigest, fileDigest string, size int64) (p *Partial, done bool, err error) {
	if err := checkStageArgs(name, v, manifestDigest, fileDigest); err != nil {
		return nil, false, err
	}
	if size < 0 {
		return nil, false, fmt.Errorf("stage %s@%d: negative size %d", name, v, size)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if done, err := s.prepareStageLocked(name, v, manifestDigest, fileDigest); err != nil || done {
		return nil, done, err
	}
	want := Marker{Name: name, Version: v, ManifestDigest: manifestDigest, FileDigest: fileDigest, Size: size}
	dir := filepath.Join(s.dir, name, partialPrefix+strconv.Itoa(v))
	if p, err := s.reopenPartial(dir, want); err == nil {
		s.log.Info("resuming partial download", "model", name, "version", v)
		return p, false, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		s.log.Warn("discarding partial download", "model", name, "version", v, "reason", err)
	}
	if err := os.RemoveAll(dir); err != nil {
		return nil, false, fmt.Errorf("remove stale %s: %w", dir, err)
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, false, fmt.Errorf("create %s: %w", dir, err)
	}
	meta, err := json.Marshal(want)
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, partialMetaFile), meta, 0o644)
	}
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, false, fmt.Errorf("write %s: %w", partialMetaFile, err)
	}
	p, err = s.newPartial(dir, want, os.O_RDWR|os.O_CREATE|os.O_EXCL)
	if err == nil {
		if err = p.f.Truncate(size); err != nil {
			_ = p.f.Close()
		}
	}
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, false, fmt.Errorf("create model file in %s: %w", dir, err)
	}
	return p, false, nil
}

// reopenPartial opens the partial in dir if its meta file names exactly want and its file has
// want's size. An error wrapping os.ErrNotExist means there is none.
func (s *Store) reopenPartial(dir string, want Marker) (*Partial, error) {
	b, err := os.ReadFile(filepath.Join(dir, partialMetaFile))
	if err != nil {
		return nil, err
	}
	had, err := parseMarker(b)
	if err != nil {
		return nil, err
	}
	if had != want {
		return nil, fmt.Errorf("it is for %s (%d bytes), not %s", had.FileDigest, had.Size, want.FileDigest)
	}
	p, err := s.newPartial(dir, want, os.O_RDWR)
	if err != nil {
		return nil, err
	}
	st, err := p.f.Stat()
	if err == nil && st.Size() != want.Size {
		err = fmt.Errorf("file is %d bytes, want %d", st.Size(), want.Size)
	}
	if err != nil {
		_ = p.f.Close()
		return nil, err
	}
	p.resumed = true
	return p, nil
}

func (s *Store) newPartial(dir string, m Marker, flag int) (*Partial, error) {
	f, err := os.OpenFile(filepath.Join(dir, ModelFile), flag, 0o644)
	if err != nil {
		return nil, err
	}
	return &Partial{s: s, m: m, dir: dir, f: f, h: sha256.New()}, nil
}

// PartialInfo describes a resumable download on disk.
type PartialInfo struct {
	// Marker is what the file will be once whole (Size included).
	Marker
	// Path is its file: bytes at the manifest's offsets may be there, unverified.
	Path string
}

// Partials lists name's resumable downloads whose meta file is readable.
func (s *Store) Partials(name string) ([]PartialInfo, error) {
	if err := ValidName(name); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	entries, err := os.ReadDir(filepath.Join(s.dir, name))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", name, err)
	}
	var out []PartialInfo
	for _, e := range entries {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), partialPrefix) {
			continue
		}
		dir := filepath.Join(s.dir, name, e.Name())
		b, err := os.ReadFile(filepath.Join(dir, partialMetaFile))
		if err != nil {
			continue
		}
		if m, err := parseMarker(b); err == nil && m.Name == name && e.Name() == partialPrefix+strconv.Itoa(m.Version) {
			out = append(out, PartialInfo{Marker: m, Path: filepath.Join(dir, ModelFile)})
		}
	}
	return out, nil
}

// DropPartials deletes name's resumable downloads except the one of version keep (0: all).
func (s *Store) DropPartials(name string, keep int) error {
	if err := ValidName(name); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	modelDir := filepath.Join(s.dir, name)
	entries, err := os.ReadDir(modelDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("list %s: %w", name, err)
	}
	for _, e := range entries {
		n := e.Name()
		if !strings.HasPrefix(n, partialPrefix) || n == partialPrefix+strconv.Itoa(keep) {
			continue
		}
		if err := os.RemoveAll(filepath.Join(modelDir, n)); err != nil {
			return fmt.Errorf("remove %s/%s: %w", name, n, err)
		}
		s.log.Info("removed partial download", "model", name, "entry", n)
	}
	return nil
}

// Resumed reports whether the Partial was left by an earlier run (its bytes are unverified).
func (p *Partial) Resumed() bool { return p.resumed }

// Size is the file's final size (-1 for Stage's, not known before Commit).
func (p *Partial) Size() int64 { return p.m.Size }

// WriteAt writes b at off. Every writebackEvery bytes written it starts the writeback of the
// file's dirty pages (see startWriteback), so that Commit's fsync has little left to do.
func (p *Partial) WriteAt(b []byte, off int64) error {
	if off < 0 || (p.m.Size >= 0 && off+int64(len(b)) > p.m.Size) {
		return fmt.Errorf("write model file: %d bytes at %d outside its %d", len(b), off, p.m.Size)
	}
	if !p.wrote.Swap(true) {
		p.s.hook("partial")
	}
	n, err := p.f.WriteAt(b, off)
	w := p.written.Add(int64(n))
	if f := p.flushed.Load(); w-f >= writebackEvery && p.flushed.CompareAndSwap(f, w) {
		startWriteback(p.f, 0, 0)
	}
	if err != nil {
		return fmt.Errorf("write model file: %w", err)
	}
	return nil
}

// ReadAt reads len(b) bytes at off (io.ReaderAt).
func (p *Partial) ReadAt(b []byte, off int64) (int, error) { return p.f.ReadAt(b, off) }

// HashThrough feeds the file's bytes up to end into the file hash, from where the last call
// stopped. The caller must be done writing them. It stops with ctx's error when ctx ends.
func (p *Partial) HashThrough(ctx context.Context, end int64) error {
	if p.hashed >= end {
		return nil
	}
	bp := hashBufs.Get().(*[]byte)
	defer hashBufs.Put(bp)
	buf := *bp
	for p.hashed < end {
		if err := ctx.Err(); err != nil {
			return err
		}
		b := buf[:min(int64(len(buf)), end-p.hashed)]
		n, err := p.f.ReadAt(b, p.hashed)
		p.h.Write(b[:n])
		p.hashed += int64(n)
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = fmt.Errorf("%w: file ends at %d, hashing through %d", ErrDigestMismatch, p.hashed, end)
			}
			return fmt.Errorf("hash model file: %w", err)
		}
	}
	return nil
}

// Commit hashes what HashThrough has not, and keeps the file only if it hashes to the file
// digest (else the Partial is discarded: ErrDigestMismatch). It syncs the file, writes and syncs
// the marker, and renames the directory to MODELDIR/NAME/VERSION, so that directory only ever
// appears whole. The Partial is closed afterwards, whatever the outcome.
func (p *Partial) Commit(ctx context.Context) error {
	s, m := p.s, p.m
	err := p.commit(ctx)
	if err != nil {
		if errors.Is(err, ErrDigestMismatch) || p.dirIsTemp() {
			p.Discard()
		} else {
			p.Close()
		}
		return fmt.Errorf("stage %s@%d: %w", m.Name, m.Version, err)
	}
	s.log.Info("model version staged", "model", m.Name, "version", m.Version, "size", p.m.Size, "digest", m.FileDigest)
	s.hook("staged")
	return nil
}

func (p *Partial) commit(ctx context.Context) error {
	size := p.m.Size
	if size < 0 {
		st, err := p.f.Stat()
		if err != nil {
			return fmt.Errorf("stat model file: %w", err)
		}
		size = st.Size()
	}
	if err := p.HashThrough(ctx, size); err != nil {
		return err
	}
	var sum [sha256.Size]byte
	if got := artifact.FormatDigest([sha256.Size]byte(p.h.Sum(sum[:0]))); got != p.m.FileDigest {
		return fmt.Errorf("%w: wrote %d bytes hashing to %s, want %s", ErrDigestMismatch, size, got, p.m.FileDigest)
	}
	if err := p.f.Sync(); err != nil {
		return fmt.Errorf("sync model file: %w", err)
	}
	if err := p.f.Close(); err != nil {
		return fmt.Errorf("close model file: %w", err)
	}
	m := p.m
	m.Size = size
	// A marker a crashed Commit left. The meta file stays until the directory is in place: a
	// crash before that finds the whole download again, to be committed once more.
	if err := os.Remove(filepath.Join(p.dir, MarkerFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove stale marker: %w", err)
	}
	if err := writeMarker(filepath.Join(p.dir, MarkerFile), m); err != nil {
		return err
	}
	if err := syncDir(p.dir); err != nil {
		return err
	}
	s := p.s
	s.mu.Lock()
	defer s.mu.Unlock()
	done, err := s.prepareStageLocked(m.Name, m.Version, m.ManifestDigest, m.FileDigest)
	if err != nil {
		return err
	}
	modelDir := filepath.Join(s.dir, m.Name)
	if done { // staged meanwhile, with the same bytes
		return os.RemoveAll(p.dir)
	}
	final := s.versionDir(m.Name, m.Version)
	if err := os.Rename(p.dir, final); err != nil {
		return fmt.Errorf("move %s@%d into place: %w", m.Name, m.Version, err)
	}
	// Left behind by a crash here, the meta file is an extra file verifyDir does not read.
	if err := os.Remove(filepath.Join(final, partialMetaFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.log.Warn("remove partial meta file", "dir", final, "err", err)
	}
	p.m.Size = size
	if err := syncDir(modelDir); err != nil {
		return err
	}
	s.rememberVerified(m.Name, m.Version)
	return nil
}

// dirIsTemp reports whether the Partial is Stage's throwaway directory.
func (p *Partial) dirIsTemp() bool { return strings.HasPrefix(filepath.Base(p.dir), tmpPrefix) }

// Close releases the file and keeps the directory: a resumable Partial is found again by
// OpenPartial.
func (p *Partial) Close() { _ = p.f.Close() }

// Discard closes the Partial and deletes its directory.
func (p *Partial) Discard() {
	_ = p.f.Close()
	if err := os.RemoveAll(p.dir); err != nil {
		p.s.log.Warn("remove partial download", "dir", p.dir, "err", err)
	}
}

// checkStageArgs validates what names a version to stage.
func checkStageArgs(name string, v int, manifestDigest, fileDigest string) error {
	if err := ValidName(name); err != nil {
		return err
	}
	if v < 1 {
		return fmt.Errorf("%w: %d", ErrBadVersion, v)
	}
	for _, d := range []string{manifestDigest, fileDigest} {
		if _, err := artifact.ParseDigest(d); err != nil {
			return fmt.Errorf("stage %s@%d: %w", name, v, err)
		}
	}
	return nil
}

// prepareStageLocked makes room for staging name@v: done reports that the version directory
// already holds exactly these digests (and verifies); a version in use with other content is
// ErrConflict; a stale, unused directory is removed. It creates MODELDIR/NAME if needed. Call
// with s.mu held.
func (s *Store) prepareStageLocked(name string, v int, manifestDigest, fileDigest string) (done bool, err error) {
	modelDir := filepath.Join(s.dir, name)
	if err := os.MkdirAll(modelDir, 0o755); err != nil {
		return false, fmt.Errorf("create %s: %w", modelDir, err)
	}
	if err := syncDir(s.dir); err != nil {
		return false, err
	}
	final := s.versionDir(name, v)
	if _, err := os.Lstat(final); err != nil {
		return false, nil
	}
	m, verr := verifyDir(final, name, v, true)
	if verr == nil && m.FileDigest == fileDigest && m.ManifestDigest == manifestDigest {
		s.rememberVerified(name, v)
		return true, nil
	}
	cur, _ := readLink(modelDir, CurrentLink)
	prev, _ := readLink(modelDir, PreviousLink)
	if v == cur || v == prev {
		return false, fmt.Errorf("%w: %s@%d is in use and holds %s (%v), asked for %s", ErrConflict, name, v, m.FileDigest, verr, fileDigest)
	}
	s.log.Warn("replacing version directory", "model", name, "version", v, "reason", verr)
	if err := os.RemoveAll(final); err != nil {
		return false, fmt.Errorf("remove stale %s: %w", final, err)
	}
	return false, nil
}
