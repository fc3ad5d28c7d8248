package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/driftline/driftline/agent/devicedb"
	"github.com/driftline/driftline/shared/contract"
	"github.com/driftline/driftline/shared/contract/rows"
)

// Sub-directories of a watched directory.
const (
	// DoneDir receives files processed to their end.
	DoneDir = "done"
	// FailedDir receives files that could not be read, each with a NAME.error note.
	FailedDir = "failed"
)

// checkpointRows is how often (in rows) a file's progress is recorded.
const checkpointRows = 1024

// DirOptions configure a DirWatcher.
type DirOptions struct {
	// Dir is the watched directory (required); done/ and failed/ are created in it.
	Dir string
	// State holds the progress of the file being read (required; the agent passes a Sub of its
	// namespace), so a restart resumes a file instead of reading it twice.
	State devicedb.Namespace
	// Interval is the polling period of Run (default 2 s).
	Interval time.Duration
	// MinAge skips files modified less than this long ago, which may still be being written
	// (default 1 s). Writers should still write elsewhere and rename into Dir.
	MinAge time.Duration
	// Now is the clock for MinAge (default time.Now).
	Now func() time.Time
	// Logger (default slog.Default()).
	Logger *slog.Logger
}

// DirWatcher feeds the .csv and .jsonl files of a directory to a Pipeline, each once: a file
// read to its end moves to done/, an unreadable one to failed/ with a .error note.
type DirWatcher struct {
	p    *Pipeline
	opts DirOptions
	log  *slog.Logger
}

// progress is the stored state of one file: which file (size and modification time) and how
// many of its rows were processed; Done once all were.
type progress struct {
	Size  int64 `json:"size"`
	MTime int64 `json:"mtime_ns"`
	Rows  int64 `json:"rows"`
	Done  bool  `json:"done,omitempty"`
}

func decodeProgress(b []byte) (progress, error) {
	var pr progress
	if err := json.Unmarshal(b, &pr); err != nil {
		return progress{}, fmt.Errorf("file progress record: %w", err)
	}
	if pr.Size < 0 || pr.Rows < 0 {
		return progress{}, fmt.Errorf("file progress record: negative size %d or rows %d", pr.Size, pr.Rows)
	}
	return pr, nil
}

// NewDirWatcher checks opts and creates Dir/done and Dir/failed.
func NewDirWatcher(p *Pipeline, opts DirOptions) (*DirWatcher, error) {
	if opts.Dir == "" {
		return nil, fmt.Errorf("%w: watched directory is empty", ErrBadOptions)
	}
	if opts.Interval <= 0 {
		opts.Interval = 2 * time.Second
	}
	if opts.MinAge == 0 {
		opts.MinAge = time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	for _, d := range []string{DoneDir, FailedDir} {
		if err := os.MkdirAll(filepath.Join(opts.Dir, d), 0o755); err != nil {
			return nil, fmt.Errorf("watched directory: %w", err)
		}
	}
	return &DirWatcher{p: p, opts: opts, log: opts.Logger.With("dir", opts.Dir)}, nil
}

// Run scans the directory every Interval until ctx is done.
func (d *DirWatcher) Run(ctx context.Context) {
	t := time.NewTicker(d.opts.Interval)
	defer t.Stop()
	for {
		if err := d.Scan(ctx); err != nil && ctx.Err() == nil {
			d.log.Error("watched directory scan", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Scan processes every ready file of the directory once, in name order, and returns the first
// error that stops it (a state or file-system failure; a bad file is moved to failed/, not an
// error). It returns ctx's error, with the current file's progress saved, when ctx ends.
func (d *DirWatcher) Scan(ctx context.Context) error {
	ents, err := os.ReadDir(d.opts.Dir)
	if err != nil {
		return fmt.Errorf("read watched directory: %w", err)
	}
	present := map[string]bool{}
	for _, e := range ents {
		name := e.Name()
		if !e.Type().IsRegular() || !watched(name) {
			continue
		}
		present[name] = true
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := d.file(ctx, name); err != nil {
			return err
		}
	}
	return d.forgetGone(present)
}

// watched says whether a file name is one the watcher reads.
func watched(name string) bool {
	ext := strings.ToLower(filepath.Ext(name))
	return (ext == ".csv" || ext == ".jsonl") && !strings.HasPrefix(name, ".")
}

// forgetGone deletes progress records of files no longer in the directory (moved by us just
// before a crash, or removed by someone else).
func (d *DirWatcher) forgetGone(present map[string]bool) error {
	var gone [][]byte
	err := d.opts.State.IterateKeys(false, func(k []byte, _ int64) error {
		if !present[string(k)] {
			gone = append(gone, slices.Clone(k))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("list file progress: %w", err)
	}
	for _, k := range gone {
		if err := d.opts.State.Delete(k); err != nil {
			return fmt.Errorf("forget file progress: %w", err)
		}
	}
	return nil
}

// file processes one file, resuming from its recorded progress.
func (d *DirWatcher) file(ctx context.Context, name string) error {
	path := filepath.Join(d.opts.Dir, name)
	info, err := os.Stat(path)
	if err != nil {
		return nil // gone since ReadDir
	}
	if d.opts.MinAge > 0 && d.opts.Now().Sub(info.ModTime()) < d.opts.MinAge {
		return nil
	}
	key := []byte(name)
	pr := progress{Size: info.Size(), MTime: info.ModTime().UnixNano()}
	switch b, err := d.opts.State.Get(key); {
	case errors.Is(err, devicedb.ErrNotFound):
	case err != nil:
		return fmt.Errorf("file progress %s: %w", name, err)
	default:
		old, err := decodeProgress(b)
		if err != nil {
			d.log.Warn("progress record unreadable; reading the file from its start", "file", name, "err", err)
		} else if old.Size == pr.Size && old.MTime == pr.MTime {
			pr = old
		}
	}
	if pr.Done {
		return d.finish(name, nil, pr)
	}
	f, err := os.Open(path)
	if err != nil {
		return d.finish(name, err, pr)
	}
	defer f.Close()
	format, err := rows.FormatOf(name)
	if err != nil {
		return d.finish(name, err, pr)
	}
	if pr.Rows > 0 {
		d.log.Info("resuming file", "file", name, "rows_done", pr.Rows)
	}
	var saveErr error
	last := pr.Rows
	_, err = d.p.ingestFrom("file:"+name, func(s *contract.Schema) (rows.Reader, error) { return rows.Open(f, format, s) }, pr.Rows,
		func(n int64) error {
			last = n
			stop := ctx.Err()
			if n%checkpointRows != 0 && stop == nil {
				return nil
			}
			pr.Rows = n
			if saveErr = d.save(key, pr); saveErr != nil {
				return saveErr
			}
			return stop
		})
	pr.Rows = last
	switch {
	case errors.Is(err, ErrNoContract):
		return nil // try again on the next scan
	case saveErr != nil:
		return saveErr
	case ctx.Err() != nil && errors.Is(err, ctx.Err()):
		return err
	case err != nil:
		return d.finish(name, err, pr)
	}
	pr.Done = true
	if err := d.save(key, pr); err != nil {
		return err
	}
	return d.finish(name, nil, pr)
}

func (d *DirWatcher) save(key []byte, pr progress) error {
	b, _ := json.Marshal(pr)
	if err := d.opts.State.Set(key, b); err != nil {
		return fmt.Errorf("save file progress: %w", err)
	}
	return nil
}

// finish moves a file to done/ (cause nil) or failed/ with a NAME.error note, then forgets
// its progress.
func (d *DirWatcher) finish(name string, cause error, pr progress) error {
	sub := DoneDir
	if cause != nil {
		sub = FailedDir
	}
	dst := freeName(filepath.Join(d.opts.Dir, sub), name)
	if cause != nil {
		note := fmt.Sprintf("%s\nfailed at %s after %d rows\n", cause, d.opts.Now().UTC().Format(time.RFC3339), pr.Rows)
		if err := os.WriteFile(dst+".error", []byte(note), 0o644); err != nil {
			return fmt.Errorf("write failure note: %w", err)
		}
		d.log.Warn("file moved to failed/", "file", name, "err", cause)
	}
	if err := os.Rename(filepath.Join(d.opts.Dir, name), dst); err != nil {
		return fmt.Errorf("move %s to %s/: %w", name, sub, err)
	}
	if err := d.opts.State.Delete([]byte(name)); err != nil {
		return fmt.Errorf("forget file progress: %w", err)
	}
	if cause == nil {
		d.log.Info("file processed", "file", name, "rows", pr.Rows)
	}
	return nil
}

// freeName returns dir/name, or dir/BASE-N.EXT for the first N not taken.
func freeName(dir, name string) string {
	p := filepath.Join(dir, name)
	if _, err := os.Lstat(p); errors.Is(err, os.ErrNotExist) {
		return p
	}
	ext := filepath.Ext(name)
	base := strings.TrimSuffix(name, ext)
	for n := 1; ; n++ {
		p = filepath.Join(dir, fmt.Sprintf("%s-%d%s", base, n, ext))
		if _, err := os.Lstat(p); errors.Is(err, os.ErrNotExist) {
			return p
		}
	}
}
