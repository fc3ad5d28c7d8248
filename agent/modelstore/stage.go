package modelstore

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
)

// testHook, when set by a test, is called at each named step of Stage and Activate; the crash
// tests kill the process there.
var testHook func(step string)

func hook(step string) {
	if testHook != nil {
		testHook(step)
	}
}

// hook calls the package's test hook and the Store's Options.Failpoint at step.
func (s *Store) hook(step string) {
	hook(step)
	if s.opts.Failpoint != nil {
		s.opts.Failpoint(step)
	}
}

// Stage writes version v of model name into MODELDIR/NAME/VERSION without touching current.
// write is called once with the file to fill, in order (for example artifact.Assemble from the
// chunk cache); Stage hashes the file and keeps it only if it hashes to fileDigest. The file is
// written into a .tmp-VERSION-RANDOM directory (a Partial that Recover deletes), synced with its
// verified-marker, and renamed into place, so a VERSION directory is always whole. Staging a
// version already on disk with the same digests does nothing; ctx cancels the write. A download
// that must survive restarts uses OpenPartial instead.
func (s *Store) Stage(ctx context.Context, name string, v int, manifestDigest, fileDigest string, write func(w io.Writer) error) error {
	if err := checkStageArgs(name, v, manifestDigest, fileDigest); err != nil {
		return err
	}
	s.mu.Lock()
	done, err := s.prepareStageLocked(name, v, manifestDigest, fileDigest)
	var tmp string
	if err == nil && !done {
		tmp, err = os.MkdirTemp(filepath.Join(s.dir, name), tmpPrefix+strconv.Itoa(v)+"-")
	}
	if err == nil && !done {
		if s.writing == nil {
			s.writing = map[string]bool{}
		}
		s.writing[tmp] = true
		defer func() {
			s.mu.Lock()
			delete(s.writing, tmp)
			s.mu.Unlock()
		}()
	}
	s.mu.Unlock()
	if err != nil || done {
		return err
	}
	m := Marker{Name: name, Version: v, ManifestDigest: manifestDigest, FileDigest: fileDigest, Size: -1}
	p, err := s.newPartial(tmp, m, os.O_RDWR|os.O_CREATE|os.O_EXCL)
	if err != nil {
		_ = os.RemoveAll(tmp)
		return fmt.Errorf("stage %s@%d: create model file: %w", name, v, err)
	}
	if err := write(&partialWriter{ctx: ctx, p: p}); err != nil {
		p.Discard()
		return fmt.Errorf("stage %s@%d: write model file: %w", name, v, err)
	}
	return p.Commit(ctx)
}

// partialWriter appends to a Partial and stops when ctx is done.
type partialWriter struct {
	ctx context.Context
	p   *Partial
	n   int64
}

func (w *partialWriter) Write(b []byte) (int, error) {
	if err := w.ctx.Err(); err != nil {
		return 0, err
	}
	if err := w.p.WriteAt(b, w.n); err != nil {
		return 0, err
	}
	w.n += int64(len(b))
	return len(b), nil
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
