package state

import (
	"errors"
	"slices"

	"github.com/dgraph-io/badger/v4"
)

// MaxReportsAbove bounds how many numbered reports past a hole a ReportCursor remembers; a
// report beyond it is not counted now (the agent sends it again after the hole is filled).
const MaxReportsAbove = 4096

// ReportCursor is what the hub has stored of one device's numbered reports (wire.ReportSeq):
// every report of Epoch up to Through, and the ones in Above (sorted, each > Through+1). It is
// the source of the hub's acknowledgement to the agent (wire.Ack).
type ReportCursor struct {
	Epoch   uint64   `json:"epoch"`
	Through uint64   `json:"through"`
	Above   []uint64 `json:"above,omitempty"`
}

// Gap reports whether the hub holds reports after a missing one.
func (c ReportCursor) Gap() bool { return len(c.Above) > 0 }

// accept records one numbered report and reports whether it is news (to be counted): false for
// a repeat, for a report of an older epoch (the agent numbers a new epoch only once the hub
// has acknowledged every report of the old one, so such a report is a broker's redelivery),
// and for one past MaxReportsAbove.
func (c *ReportCursor) accept(epoch, seq, first uint64) bool {
	switch {
	case epoch < c.Epoch:
		return false
	case epoch > c.Epoch:
		*c = ReportCursor{Epoch: epoch}
	}
	if first > 0 && first-1 > c.Through {
		// The agent no longer holds anything below first (dropped for its bounds): stop waiting.
		c.Through = first - 1
	}
	c.advance()
	if seq <= c.Through {
		return false
	}
	i, found := slices.BinarySearch(c.Above, seq)
	if found {
		return false
	}
	if seq == c.Through+1 {
		c.Through = seq
		c.advance()
		return true
	}
	if len(c.Above) >= MaxReportsAbove {
		return false
	}
	c.Above = slices.Insert(c.Above, i, seq)
	return true
}

// advance drops what Through covers from Above and moves Through over what Above continues.
func (c *ReportCursor) advance() {
	n := 0
	for n < len(c.Above) && c.Above[n] <= c.Through+1 {
		c.Through = max(c.Through, c.Above[n])
		n++
	}
	c.Above = c.Above[n:]
	if len(c.Above) == 0 {
		c.Above = nil
	}
}

func getReportCursor(txn *badger.Txn, id string) (ReportCursor, error) {
	var c ReportCursor
	err := getJSON(txn, nameKey(pReportCursor, id), &c)
	if errors.Is(err, ErrNotFound) {
		return ReportCursor{}, nil
	}
	return c, err
}

// applyNumbered counts the device's numbered reports that are news into its health summary and
// stores the advanced cursor.
func applyNumbered(txn *badger.Txn, d *storedDevice, reports []NumberedReport) error {
	if len(reports) == 0 {
		return nil
	}
	c, err := getReportCursor(txn, d.ID)
	if err != nil {
		return err
	}
	for _, r := range reports {
		if !c.accept(r.Epoch, r.Seq, r.First) {
			continue
		}
		if err := applyHealth(txn, d, r.Health); err != nil {
			return err
		}
	}
	return putJSON(txn, nameKey(pReportCursor, d.ID), c)
}

// applyHealth folds one health part into the device's summary and its runs edge.
func applyHealth(txn *badger.Txn, d *storedDevice, part HealthSummary) error {
	merged, same := part, sameWindow(d.Health, part)
	if same {
		merged = mergeHealth(*d.Health, part)
	}
	if err := attachHealth(txn, d.ID, part, merged, same, same && d.Health.DatasetDrift); err != nil {
		return err
	}
	d.Health = &merged
	return nil
}

// ReportCursor returns what the hub has stored of the device's numbered reports (zero when it
// sent none).
func (r Reader) ReportCursor(id string) (ReportCursor, error) {
	var c ReportCursor
	err := r.DB.View(func(txn *badger.Txn) error {
		var err error
		c, err = getReportCursor(txn, id)
		return err
	})
	return c, err
}
