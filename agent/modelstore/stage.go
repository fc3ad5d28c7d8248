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

	"github.com/driftline/driftline/shared/artifact"
)

// testHook, when set by a test, is called at each named step of Stage and Activate; the crash
// tests kill the process there.
var testHook func(step string)

func hook(step string) {
	if testHook != nil {
		testHook(step)
	}
}

// Stage writes version v of model name into MODELDIR/NAME/VERSION without touching current.
// write is called once with the file to fill (for example artifact.Assemble from the chunk
// cache); Stage hashes what it writes and keeps it only if it hashes to fileDigest. The file is
// written into a .tmp-VERSION-RANDOM directory, synced with its verified-marker, and renamed into
// place, so a VERSION directory is always whole. Staging a version already on disk with the same
// digests does nothing; ctx cancels the write.
func (s *Store) Stage(ctx context.Context, name string, v int, manifestDigest, fileDigest string, write func(w io.Writer) error) error {
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
	s.mu.Lock()
	defer s.mu.Unlock()

	modelDir := filepath.Join(s.dir, name)
	if err := os.MkdirAll(modelDir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", modelDir, err)
	}
	if err := syncDir(s.dir); err != nil {
		return err
	}
	final := s.versionDir(name, v)
	if _, err := os.Lstat(final); err == nil {
		m, verr := verifyDir(final, name, v, true)
		if verr == nil && m.FileDigest == fileDigest && m.ManifestDigest == manifestDigest {
			s.rememberVerified(name, v)
			return nil
		}
		cur, _ := readLink(modelDir, CurrentLink)
		prev, _ := readLink(modelDir, PreviousLink)
		if v == cur || v == prev {
			return fmt.Errorf("%w: %s@%d is in use and holds %s (%v), asked for %s", ErrConflict, name, v, m.FileDigest, verr, fileDigest)
		}
		s.log.Warn("replacing version directory", "model", name, "version", v, "reason", verr)
		if err := os.RemoveAll(final); err != nil {
			return fmt.Errorf("remove stale %s: %w", final, err)
		}
	}

	tmp, err := os.MkdirTemp(modelDir, tmpPrefix+strconv.Itoa(v)+"-")
	if err != nil {
		return fmt.Errorf("create staging dir: %w", err)
	}
	keep := false
	defer func() {
		if !keep {
			_ = os.RemoveAll(tmp)
		}
	}()
	m := Marker{Name: name, Version: v, ManifestDigest: manifestDigest, FileDigest: fileDigest}
	m.Size, err = writeModel(ctx, filepath.Join(tmp, ModelFile), fileDigest, write)
	if err != nil {
		return fmt.Errorf("stage %s@%d: %w", name, v, err)
	}
	if err := writeMarker(filepath.Join(tmp, MarkerFile), m); err != nil {
		return fmt.Errorf("stage %s@%d: %w", name, v, err)
	}
	if err := syncDir(tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, final); err != nil {
		return fmt.Errorf("move %s@%d into place: %w", name, v, err)
	}
	keep = true
	if err := syncDir(modelDir); err != nil {
		return err
	}
	s.rememberVerified(name, v)
	s.log.Info("model version staged", "model", name, "version", v, "size", m.Size, "digest", fileDigest)
	hook("staged")
	return nil
}

// writeModel creates path, lets write fill it, checks the sha256 and syncs the file.
func writeModel(ctx context.Context, path, fileDigest string, write func(io.Writer) error) (int64, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return 0, fmt.Errorf("create model file: %w", err)
	}
	defer f.Close()
	hw := &hashWriter{ctx: ctx, w: f, h: sha256.New(), file: f}
	if err := write(hw); err != nil {
		return 0, fmt.Errorf("write model file: %w", err)
	}
	var sum [sha256.Size]byte
	if got := artifact.FormatDigest([sha256.Size]byte(hw.h.Sum(sum[:0]))); got != fileDigest {
		return 0, fmt.Errorf("%w: wrote %d bytes hashing to %s, want %s", ErrDigestMismatch, hw.n, got, fileDigest)
	}
	if err := f.Sync(); err != nil {
		return 0, fmt.Errorf("sync model file: %w", err)
	}
	if err := f.Close(); err != nil {
		return 0, fmt.Errorf("close model file: %w", err)
	}
	return hw.n, nil
}

// writeMarker writes and syncs the verified-marker.
func writeMarker(path string, m Marker) error {
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode marker: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("create marker: %w", err)
	}
	defer f.Close()
	if _, err := f.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("write marker: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync marker: %w", err)
	}
	return f.Close()
}

// writebackEvery is how many bytes of a model file are written before their writeback is
// started (startWriteback), like RocksDB's bytes_per_sync.
const writebackEvery = 8 << 20

// hashWriter writes through to the file, hashing and counting, and stops when ctx is done. With
// file set, it starts the writeback of every writebackEvery bytes written.
type hashWriter struct {
	ctx     context.Context
	w       io.Writer
	h       hash.Hash
	n       int64
	file    *os.File
	flushed int64 // bytes whose writeback was started
}

func (hw *hashWriter) Write(p []byte) (int, error) {
	if err := hw.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := hw.w.Write(p)
	hw.h.Write(p[:n])
	first := hw.n == 0 && n > 0
	hw.n += int64(n)
	if first {
		hook("partial")
	}
	if hw.file != nil && hw.n-hw.flushed >= writebackEvery {
		startWriteback(hw.file, hw.flushed, hw.n-hw.flushed)
		hw.flushed = hw.n
	}
	if err == nil && n < len(p) {
		err = io.ErrShortWrite
	}
	if err != nil && !errors.Is(err, io.ErrShortWrite) {
		err = fmt.Errorf("write model file: %w", err)
	}
	return n, err
}
