package modelstore

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/driftline/driftline/agent/devicedb"
)

// Journal steps. The journal of a model exists from just before its links are touched until the
// activation is committed or rolled back.
const (
	// stepSwitching: about to point previous at Old and current at New (or done some of it).
	stepSwitching = "switching"
	// stepChecking: current points at New; the health check is running.
	stepChecking = "checking"
	// stepRollingBack: restoring current to Old and previous to OldPrevious.
	stepRollingBack = "rolling_back"
)

// journal is the persisted record of one activation in progress, keyed by model name.
type journal struct {
	Name string `json:"name"`
	// New is the version being activated; Old was current before (0: none); OldPrevious was
	// previous before (0: none). Together they let Recover finish or undo every step.
	New         int    `json:"new"`
	Old         int    `json:"old"`
	OldPrevious int    `json:"old_previous"`
	Step        string `json:"step"`
	// Attempts counts the runs of the switch and health check, the first included.
	Attempts int `json:"attempts"`
}

// saveJournal stores j and syncs the state database, so that the journal is on disk before the
// file-system change it announces.
func (s *Store) saveJournal(j journal) error {
	b, err := json.Marshal(j)
	if err != nil {
		return fmt.Errorf("encode journal: %w", err)
	}
	if err := s.journal.Set([]byte(j.Name), b); err != nil {
		return fmt.Errorf("save activation journal of %s: %w", j.Name, err)
	}
	return s.journal.Sync()
}

func (s *Store) deleteJournal(name string) error {
	if err := s.journal.Delete([]byte(name)); err != nil {
		return fmt.Errorf("delete activation journal of %s: %w", name, err)
	}
	return s.journal.Sync()
}

// loadJournal returns the pending journal of name, if any.
func (s *Store) loadJournal(name string) (journal, bool, error) {
	b, err := s.journal.Get([]byte(name))
	if errors.Is(err, devicedb.ErrNotFound) {
		return journal{}, false, nil
	}
	if err != nil {
		return journal{}, false, fmt.Errorf("load activation journal of %s: %w", name, err)
	}
	j, err := parseJournal(b)
	if err != nil {
		return journal{}, false, err
	}
	return j, true, nil
}

// parseJournal decodes a stored journal; damage is an error, never a panic.
func parseJournal(b []byte) (journal, error) {
	var j journal
	if err := json.Unmarshal(b, &j); err != nil {
		return journal{}, fmt.Errorf("decode activation journal: %w", err)
	}
	if ValidName(j.Name) != nil || j.New < 1 || j.Old < 0 || j.OldPrevious < 0 {
		return journal{}, fmt.Errorf("decode activation journal: bad fields %+v", j)
	}
	switch j.Step {
	case stepSwitching, stepChecking, stepRollingBack:
	default:
		return journal{}, fmt.Errorf("decode activation journal: unknown step %q", j.Step)
	}
	return j, nil
}

// pendingJournals lists every stored journal; undecodable ones are returned by key with ok false.
func (s *Store) pendingJournals() (good []journal, bad []string, err error) {
	err = s.journal.Iterate(false, func(k, v []byte) error {
		j, perr := parseJournal(v)
		if perr != nil || j.Name != string(k) {
			bad = append(bad, string(k))
			return nil
		}
		good = append(good, j)
		return nil
	})
	return good, bad, err
}
