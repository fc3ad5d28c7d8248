package modelstore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Recovery actions reported by Recover.
const (
	// ActionCompleted: an interrupted activation was finished (its health check passed).
	ActionCompleted = "completed"
	// ActionRolledBack: an interrupted activation was undone; Err says why.
	ActionRolledBack = "rolled_back"
	// ActionRepaired: a link pointed at a version that failed verification and was moved.
	ActionRepaired = "repaired"
)

// Recovery reports what Recover did to one model.
type Recovery struct {
	Name string
	// Action is one of the Action constants.
	Action string
	// Current is the version current points at afterwards (0: none).
	Current int
	// Err is the reason for a rollback or repair (a failed health check, too many attempts, a
	// version that failed verification).
	Err error
}

// Recover brings MODELDIR and the journal back to a rest state after a start. For each model
// with a pending activation journal:
//   - if it was rolling back, the rollback is finished;
//   - if it has been tried MaxAttempts times already (the health check itself may be what kills
//     the agent), or the new version no longer verifies, it is rolled back;
//   - otherwise the switch is redone and the health check re-run, then committed or rolled back
//     exactly as Activate does.
//
// Then every current and previous link is checked (the file re-hashed against its marker): a
// current that fails moves to a previous that passes, or is removed; a previous that fails is
// removed. Finally staging directories, link temporaries and version directories that no link
// points at are deleted. Recover returns what it did; an error means the disk or the state
// database failed, or ctx ended.
func (s *Store) Recover(ctx context.Context) ([]Recovery, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Recovery
	good, bad, err := s.pendingJournals()
	if err != nil {
		return nil, fmt.Errorf("list activation journals: %w", err)
	}
	for _, k := range bad {
		s.log.Warn("dropping undecodable activation journal", "key", k)
		if err := s.journal.Delete([]byte(k)); err != nil {
			return nil, fmt.Errorf("drop journal %q: %w", k, err)
		}
	}
	for _, j := range good {
		r, err := s.recoverJournal(ctx, j)
		if err != nil {
			return out, err
		}
		out = append(out, r)
	}
	names, err := s.modelNames()
	if err != nil {
		return out, err
	}
	for _, name := range names {
		r, repaired, err := s.repairLinks(name)
		if err != nil {
			return out, err
		}
		if repaired {
			out = append(out, r)
		}
		if err := s.prune(name); err != nil {
			return out, err
		}
		if err := s.dropTornPartials(name); err != nil {
			return out, err
		}
	}
	return out, nil
}

// dropTornPartials removes, with a warning naming it, every resumable download of name whose
// meta file cannot be read as its own (torn by a power loss: it is written without a sync) or
// whose file is not the size it names: it could never be resumed, and leaving it would hide what
// was lost.
func (s *Store) dropTornPartials(name string) error {
	modelDir := filepath.Join(s.dir, name)
	entries, err := os.ReadDir(modelDir)
	if err != nil {
		return fmt.Errorf("list %s: %w", modelDir, err)
	}
	for _, e := range entries {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), partialPrefix) {
			continue
		}
		dir := filepath.Join(modelDir, e.Name())
		reason := func() error {
			b, err := os.ReadFile(filepath.Join(dir, partialMetaFile))
			if err != nil {
				return err
			}
			m, err := parseMarker(b)
			if err != nil {
				return err
			}
			if m.Name != name || e.Name() != partialPrefix+strconv.Itoa(m.Version) {
				return fmt.Errorf("meta names %s@%d", m.Name, m.Version)
			}
			st, err := os.Stat(filepath.Join(dir, ModelFile))
			if err != nil {
				return err
			}
			if st.Size() != m.Size {
				return fmt.Errorf("file is %d bytes, meta says %d", st.Size(), m.Size)
			}
			return nil
		}()
		if reason == nil {
			continue
		}
		s.log.Warn("discarding partial download that cannot be resumed", "model", name, "dir", dir, "reason", reason)
		if err := os.RemoveAll(dir); err != nil {
			return fmt.Errorf("remove %s: %w", dir, err)
		}
	}
	return nil
}

func (s *Store) recoverJournal(ctx context.Context, j journal) (Recovery, error) {
	r := Recovery{Name: j.Name, Action: ActionRolledBack}
	if _, err := os.Stat(filepath.Join(s.dir, j.Name)); errors.Is(err, os.ErrNotExist) {
		// The model's directory is gone (removed by an operator): nothing to finish or undo.
		s.log.Warn("dropping activation journal of a model with no directory", "model", j.Name)
		r.Err = fmt.Errorf("model directory of %s is missing", j.Name)
		return r, s.deleteJournal(j.Name)
	}
	var reason error
	switch {
	case j.Step == stepRollingBack:
		reason = errors.New("rollback was interrupted")
	case j.Attempts >= s.opts.MaxAttempts:
		reason = fmt.Errorf("activation of %s@%d interrupted %d times, giving up", j.Name, j.New, j.Attempts)
	default:
		if _, err := s.checkVersion(j.Name, j.New, true); err != nil {
			reason = fmt.Errorf("new version no longer verifies: %w", err)
		}
	}
	if reason != nil {
		s.log.Warn("rolling back interrupted activation", "model", j.Name, "version", j.New, "reason", reason)
		if err := s.rollback(j); err != nil {
			return r, err
		}
		r.Current, r.Err = j.Old, reason
		return r, nil
	}
	j.Attempts++
	j.Step = stepSwitching
	if err := s.saveJournal(j); err != nil {
		return r, err
	}
	s.log.Info("resuming interrupted activation", "model", j.Name, "version", j.New, "attempt", j.Attempts)
	err := s.finish(ctx, j)
	switch {
	case err == nil:
		r.Action, r.Current = ActionCompleted, j.New
		return r, nil
	case errors.Is(err, ErrHealthCheck):
		r.Current, r.Err = j.Old, err
		return r, nil
	default:
		return r, err
	}
}

// repairLinks makes current and previous point at versions that verify, or removes them.
func (s *Store) repairLinks(name string) (Recovery, bool, error) {
	modelDir := filepath.Join(s.dir, name)
	curV, curErr := linkedVersion(s.dir, name, CurrentLink)
	prevV, prevErr := linkedVersion(s.dir, name, PreviousLink)
	cur, prev := curV.Version, prevV.Version
	if prevErr != nil {
		s.log.Warn("removing previous link to a version that does not verify", "model", name, "err", prevErr)
		if err := removeLink(modelDir, PreviousLink); err != nil {
			return Recovery{}, false, err
		}
	}
	if curErr == nil {
		return Recovery{Name: name, Action: ActionRepaired, Current: cur, Err: prevErr}, prevErr != nil, nil
	}
	r := Recovery{Name: name, Action: ActionRepaired, Err: curErr}
	if prev != 0 {
		s.log.Warn("current does not verify, switching to previous", "model", name, "previous", prev, "err", curErr)
		if err := setLink(modelDir, CurrentLink, prev); err != nil {
			return r, false, err
		}
		if err := removeLink(modelDir, PreviousLink); err != nil {
			return r, false, err
		}
		r.Current = prev
		return r, true, nil
	}
	s.log.Warn("current does not verify and there is no previous; removing current", "model", name, "err", curErr)
	if err := removeLink(modelDir, CurrentLink); err != nil {
		return r, false, err
	}
	return r, true, nil
}

// modelNames lists the model directories under MODELDIR, sorted.
func (s *Store) modelNames() ([]string, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("list model directory: %w", err)
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() && ValidName(e.Name()) == nil {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	return names, nil
}

// Models lists the names of the models that have a directory under MODELDIR.
func (s *Store) Models() ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.modelNames()
}

// CheckLinks checks, without changing anything, what Recover's link check checks at a start:
// that the current and previous links of model name under the model directory dir, where
// present, point at version directories whose marker is valid and names them and whose file
// re-hashes to the marked digest. It returns the two versions (zero Version for a link that is
// absent) and the first failure. Crash tests call it on a stopped agent's directory: after any
// kill, current must be one whole version.
func CheckLinks(dir, name string) (current, previous Version, err error) {
	if err := ValidName(name); err != nil {
		return Version{}, Version{}, err
	}
	check := func(link string) (Version, error) {
		v, err := linkedVersion(dir, name, link)
		if err != nil {
			return Version{}, fmt.Errorf("%s link: %w", link, err)
		}
		return v, nil
	}
	if current, err = check(CurrentLink); err != nil {
		return current, Version{}, err
	}
	previous, err = check(PreviousLink)
	return current, previous, err
}
