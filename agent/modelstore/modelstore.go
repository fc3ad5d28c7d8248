// Package modelstore keeps the agent's models on disk and switches between them atomically.
//
// Layout: MODELDIR/NAME/VERSION/model is the artifact, MODELDIR/NAME/VERSION/.verified its
// verified-marker, MODELDIR/NAME/current and MODELDIR/NAME/previous are relative symlinks to a
// VERSION directory, and MODELDIR/NAME/.partial-VERSION/ holds a download in progress (Partial),
// which becomes the VERSION directory once its file hashes to the file digest. The invariant,
// whatever is killed when: current points at a whole, verified model (or does not exist).
// DESIGN.md says how each step keeps it.
package modelstore

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/driftline/driftline/agent/devicedb"
)

// File and link names inside MODELDIR/NAME.
const (
	// ModelFile is the artifact's name inside a version directory: fixed, so that a server can
	// load MODELDIR/NAME/current/model without knowing the version or the upload's file name.
	ModelFile = "model"
	// MarkerFile is the verified-marker inside a version directory (see Marker).
	MarkerFile = ".verified"
	// CurrentLink points at the active version directory.
	CurrentLink = "current"
	// PreviousLink points at the version that was active before, kept for switch-back.
	PreviousLink = "previous"
	// tmpPrefix starts staging directories; Recover deletes them.
	tmpPrefix = ".tmp-"
	// linkTmpPrefix starts symlinks being created before they are renamed over a link.
	linkTmpPrefix = ".link-"
)

var (
	// ErrBadName is returned for a model name that is not a safe single path component.
	ErrBadName = errors.New("modelstore: bad model name")
	// ErrBadVersion is returned for a version below 1.
	ErrBadVersion = errors.New("modelstore: bad version")
	// ErrDigestMismatch is returned by Stage when the written bytes do not hash to the digest.
	ErrDigestMismatch = errors.New("modelstore: file digest mismatch")
	// ErrNotStaged is returned by Activate for a version with no valid directory on disk.
	ErrNotStaged = errors.New("modelstore: version not staged")
	// ErrConflict is returned by Stage when an in-use version directory holds other content.
	ErrConflict = errors.New("modelstore: version on disk differs")
	// ErrHealthCheck is returned by Activate when the health check failed; current was switched
	// back. The message carries the tail of the command's stderr.
	ErrHealthCheck = errors.New("modelstore: health check failed")
	// ErrNoModel is returned by Current and Previous when the link does not exist.
	ErrNoModel = errors.New("modelstore: no such model version")
	// ErrPending is returned by Activate when a crashed activation of the model awaits Recover.
	ErrPending = errors.New("modelstore: activation pending recovery")
	// ErrBadMarker means a verified-marker is missing, malformed or does not match its file.
	ErrBadMarker = errors.New("modelstore: bad verified-marker")
)

// HealthCheck is the command run after current is switched. Exit status 0 means healthy.
type HealthCheck struct {
	// Argv is the command and its arguments, run without a shell. Empty: every model is healthy.
	Argv []string
	// Timeout bounds one run (default 30 s); the command's process group is killed after it.
	Timeout time.Duration
}

// Options configure a Store.
type Options struct {
	// Dir is MODELDIR. It is created if missing.
	Dir string
	// Health is the check run after each switch of current.
	Health HealthCheck
	// MaxAttempts is how many times an activation interrupted by a crash is tried before
	// Recover rolls it back (default 2: the activation and one retry at the next start).
	MaxAttempts int
	// Logger receives every switch, rollback and cleanup (default slog.Default()).
	Logger *slog.Logger
	// BeforeRemove, when set, is called with each version directory that verifies (marker and
	// size; the file is not re-hashed) just before it is deleted because neither current nor
	// previous names it, and with the versions they name (kept): the agent keeps the removed
	// version's chunks that the kept ones lack in its chunk cache. It runs with the Store's lock
	// held and must not call the Store.
	BeforeRemove func(removed Version, kept []Version)
	// Failpoint, when set, is called at each named step of Stage and Activate ("partial",
	// "staged", "journaled", "previous-set", "switched", "checking", "rollback"): crash tests
	// kill the process there. It must not call the Store.
	Failpoint func(step string)
}

// Store owns MODELDIR. Its methods are safe for concurrent use and run one at a time; a process
// must not run two Stores on one directory.
type Store struct {
	dir     string
	journal devicedb.Namespace
	opts    Options
	log     *slog.Logger
	mu      sync.Mutex
	// fresh holds, by versionKey, the model file this Store verified (hashed) while staging it
	// in this process: Activate trusts that hash while the file is the same one, unchanged.
	fresh map[string]os.FileInfo
	// writing holds the .tmp- directories Stage is filling (it does not hold the lock while it
	// writes): prune leaves them.
	writing map[string]bool
}

// versionKey names version v of name in Store.fresh.
func versionKey(name string, v int) string { return name + "@" + strconv.Itoa(v) }

// rememberVerified records that the model file of name@v, as it is now on disk, hashed to its
// marker. Call with s.mu held.
func (s *Store) rememberVerified(name string, v int) {
	fi, err := os.Stat(filepath.Join(s.versionDir(name, v), ModelFile))
	if err != nil {
		return
	}
	if s.fresh == nil {
		s.fresh = map[string]os.FileInfo{}
	}
	s.fresh[versionKey(name, v)] = fi
}

// verifiedUnchanged reports whether name@v's model file is the one rememberVerified saw, with
// the same size and modification time, and forgets it: the shortcut serves one Activate. Call
// with s.mu held.
func (s *Store) verifiedUnchanged(name string, v int) bool {
	k := versionKey(name, v)
	was, ok := s.fresh[k]
	delete(s.fresh, k)
	if !ok {
		return false
	}
	now, err := os.Stat(filepath.Join(s.versionDir(name, v), ModelFile))
	return err == nil && os.SameFile(was, now) && now.Size() == was.Size() && now.ModTime().Equal(was.ModTime())
}

// Version describes one verified version directory.
type Version struct {
	Marker
	// Dir is MODELDIR/NAME/VERSION and Path is Dir/model.
	Dir, Path string
}

// Open returns the Store for opts.Dir with its activation journal in ns. Call Recover before
// anything else after a start: it finishes or undoes what a crash interrupted.
func Open(ns devicedb.Namespace, opts Options) (*Store, error) {
	if opts.Dir == "" {
		return nil, errors.New("modelstore: no model directory configured")
	}
	if opts.Health.Timeout <= 0 {
		opts.Health.Timeout = 30 * time.Second
	}
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = 2
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("model directory %s: %w", opts.Dir, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create model directory: %w", err)
	}
	return &Store{dir: dir, journal: ns, opts: opts, log: opts.Logger.With("component", "modelstore")}, nil
}

// Dir returns MODELDIR as an absolute path.
func (s *Store) Dir() string { return s.dir }

// CurrentPath is the stable path of the active model's file, MODELDIR/NAME/current/model.
func (s *Store) CurrentPath(name string) string {
	return filepath.Join(s.dir, name, CurrentLink, ModelFile)
}

// Current describes the active version of name, or returns ErrNoModel.
func (s *Store) Current(name string) (Version, error) {
	return s.linked(name, CurrentLink)
}

// Previous describes the version of name that was active before the current one, or returns
// ErrNoModel.
func (s *Store) Previous(name string) (Version, error) {
	return s.linked(name, PreviousLink)
}

func (s *Store) linked(name, link string) (Version, error) {
	if err := ValidName(name); err != nil {
		return Version{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	v, err := readLink(filepath.Join(s.dir, name), link)
	if err != nil {
		return Version{}, err
	}
	if v == 0 {
		return Version{}, fmt.Errorf("%w: %s has no %s", ErrNoModel, name, link)
	}
	return s.checkVersion(name, v, false)
}

// versionDir is MODELDIR/NAME/VERSION.
func (s *Store) versionDir(name string, v int) string {
	return filepath.Join(s.dir, name, strconv.Itoa(v))
}

// checkVersion reads and checks the marker of name@v; deep also re-hashes the file.
func (s *Store) checkVersion(name string, v int, deep bool) (Version, error) {
	return checkVersionIn(s.dir, name, v, deep)
}

// checkVersionIn reads and checks the marker of name@v under the model directory dir; deep also
// re-hashes the file.
func checkVersionIn(dir, name string, v int, deep bool) (Version, error) {
	vdir := filepath.Join(dir, name, strconv.Itoa(v))
	m, err := verifyDir(vdir, name, v, deep)
	if err != nil {
		return Version{}, err
	}
	return Version{Marker: m, Dir: vdir, Path: filepath.Join(vdir, ModelFile)}, nil
}

// linkedVersion reads link of model name under the model directory dir and checks (re-hashing
// the file) the version it points at: a zero Version when the link is absent.
func linkedVersion(dir, name, link string) (Version, error) {
	v, err := readLink(filepath.Join(dir, name), link)
	if err != nil || v == 0 {
		return Version{}, err
	}
	return checkVersionIn(dir, name, v, true)
}
