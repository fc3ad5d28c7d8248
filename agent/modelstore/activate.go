package modelstore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Activate makes the staged version v of name current: it points previous at the old current,
// switches current to v, and runs the health check. On success the versions other than current
// and previous are deleted. On failure current (and previous) are switched back, v's directory is
// deleted, and the error wraps ErrHealthCheck. If ctx ends during the health check, the links are
// left on v with the journal pending and ctx's error is returned: Recover decides at the next start.
// Activating the version already current does nothing.
func (s *Store) Activate(ctx context.Context, name string, v int) error {
	if err := ValidName(name); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, pending, err := s.loadJournal(name); err != nil || pending {
		if err == nil {
			err = fmt.Errorf("%w: %s", ErrPending, name)
		}
		return err
	}
	modelDir := filepath.Join(s.dir, name)
	cur, err := readLink(modelDir, CurrentLink)
	if err != nil {
		return err
	}
	if cur == v {
		return nil
	}
	// A version this Store staged (and so hashed) moments ago is not hashed again while its file
	// is unchanged; any other is.
	if _, err := s.checkVersion(name, v, !s.verifiedUnchanged(name, v)); err != nil {
		return fmt.Errorf("%w: %v", ErrNotStaged, err)
	}
	prev, err := readLink(modelDir, PreviousLink)
	if err != nil {
		prev = 0 // a damaged previous link is not worth keeping
	}
	j := journal{Name: name, New: v, Old: cur, OldPrevious: prev, Step: stepSwitching, Attempts: 1}
	if err := s.saveJournal(j); err != nil {
		return err
	}
	s.hook("journaled")
	return s.finish(ctx, j)
}

// finish does the switch and the health check of journal j, then commits or rolls back. Every
// step is idempotent, so Recover can run it again after a crash anywhere inside.
func (s *Store) finish(ctx context.Context, j journal) error {
	modelDir := filepath.Join(s.dir, j.Name)
	if j.Old != 0 && j.Old != j.New {
		if err := setLink(modelDir, PreviousLink, j.Old); err != nil {
			return err
		}
		s.hook("previous-set") // between the two renames
	}
	if err := setLink(modelDir, CurrentLink, j.New); err != nil {
		return err
	}
	s.log.Info("current switched", "model", j.Name, "version", j.New, "previous", j.Old)
	s.hook("switched")
	j.Step = stepChecking
	if err := s.saveJournal(j); err != nil {
		return err
	}
	s.hook("checking")
	herr := s.health(ctx, j.Name, j.New)
	if herr != nil && ctx.Err() != nil {
		s.log.Warn("activation interrupted during health check; Recover will finish it", "model", j.Name, "version", j.New)
		return fmt.Errorf("activate %s@%d: %w", j.Name, j.New, ctx.Err())
	}
	if herr != nil {
		s.log.Warn("health check failed, switching back", "model", j.Name, "version", j.New, "back_to", j.Old, "err", herr)
		if err := s.rollback(j); err != nil {
			return errors.Join(herr, err)
		}
		return herr
	}
	if err := s.deleteJournal(j.Name); err != nil {
		return err
	}
	s.log.Info("model activated", "model", j.Name, "version", j.New)
	return s.prune(j.Name)
}

// rollback restores current to j.Old (or removes it) and previous to j.OldPrevious (or removes
// it), forgets the journal and deletes what is no longer linked.
func (s *Store) rollback(j journal) error {
	j.Step = stepRollingBack
	if err := s.saveJournal(j); err != nil {
		return err
	}
	modelDir := filepath.Join(s.dir, j.Name)
	restore := func(link string, v int) error {
		if v == 0 {
			return removeLink(modelDir, link)
		}
		return setLink(modelDir, link, v)
	}
	if err := restore(CurrentLink, j.Old); err != nil {
		return err
	}
	s.hook("rollback")
	if err := restore(PreviousLink, j.OldPrevious); err != nil {
		return err
	}
	if err := s.deleteJournal(j.Name); err != nil {
		return err
	}
	s.log.Info("activation rolled back", "model", j.Name, "version", j.New, "current", j.Old)
	return s.prune(j.Name)
}

// prune deletes every version directory of name that neither current nor previous points at
// (after Options.BeforeRemove), and leftover staging directories and link temporaries; partial
// downloads and the directories a Stage is still writing stay. A version staged and not yet
// activated is not linked either: whoever stages and activates a model must do both from one
// goroutine (the agent's desired loop), so that no activation of the same model prunes between.
func (s *Store) prune(name string) error {
	modelDir := filepath.Join(s.dir, name)
	cur, _ := readLink(modelDir, CurrentLink)
	prev, _ := readLink(modelDir, PreviousLink)
	entries, err := os.ReadDir(modelDir)
	if err != nil {
		return fmt.Errorf("list %s: %w", modelDir, err)
	}
	var kept []Version // for BeforeRemove
	for _, v := range []int{cur, prev} {
		if v == 0 || s.opts.BeforeRemove == nil {
			continue
		}
		if ver, err := s.checkVersion(name, v, false); err == nil {
			kept = append(kept, ver)
		}
	}
	removed := false
	for _, e := range entries {
		n := e.Name()
		if n == CurrentLink || n == PreviousLink {
			continue
		}
		if v, err := parseVersion(n); err == nil && (v == cur || v == prev) && e.IsDir() {
			continue
		}
		if s.writing[filepath.Join(modelDir, n)] {
			continue // a Stage is writing it
		}
		if !strings.HasPrefix(n, tmpPrefix) && !strings.HasPrefix(n, linkTmpPrefix) {
			if _, err := parseVersion(n); err != nil {
				continue // not ours: leave what an operator put there
			}
		}
		if v, err := parseVersion(n); err == nil && e.IsDir() && s.opts.BeforeRemove != nil {
			if ver, err := s.checkVersion(name, v, false); err == nil {
				s.opts.BeforeRemove(ver, kept)
			}
		}
		if err := os.RemoveAll(filepath.Join(modelDir, n)); err != nil {
			return fmt.Errorf("remove %s/%s: %w", name, n, err)
		}
		removed = true
		s.log.Info("removed model directory entry", "model", name, "entry", n)
	}
	if removed {
		return syncDir(modelDir)
	}
	return nil
}
