package state

import (
	"cmp"
	"errors"
	"slices"

	"github.com/dgraph-io/badger/v4"
)

// MaxReportsPending bounds how many numbered reports past a hole a ReportCursor holds; a report
// beyond it is not taken now (the agent sends it again after the hole is filled).
const MaxReportsPending = 1024

// ReportCursor is what the hub has stored of one device's numbered reports (wire.ReportSeq):
// every report of Epoch up to Through is applied, in order; Pending holds reports received after
// a hole (sorted by Seq), applied once the hole is filled (or the agent says, with seq_first,
// that it no longer holds what is missing). It is the source of the hub's acknowledgement to the
// agent (wire.Ack), which covers Through only.
type ReportCursor struct {
	Epoch   uint64           `json:"epoch"`
	Through uint64           `json:"through"`
	Pending []NumberedReport `json:"pending,omitempty"`
}

// Gap reports whether the hub holds reports after a missing one.
func (c ReportCursor) Gap() bool { return len(c.Pending) > 0 }

// offer records one numbered report and returns the reports it makes applicable, in sequence
// order: none for a repeat, for a report of an older epoch (the agent numbers a new epoch only
// once the hub has acknowledged every report of the old one, so such a report is a broker's
// redelivery) and for one past a hole (held in Pending, or refused past MaxReportsPending).
func (c *ReportCursor) offer(r NumberedReport) []NumberedReport {
	switch {
	case r.Epoch < c.Epoch:
		return nil
	case r.Epoch > c.Epoch:
		*c = ReportCursor{Epoch: r.Epoch}
	}
	var out []NumberedReport
	if r.First > 0 && r.First-1 > c.Through {
		// The agent no longer holds anything below First (dropped for its bounds): stop waiting,
		// and apply what was held behind the hole.
		n := 0
		for n < len(c.Pending) && c.Pending[n].Seq < r.First {
			out = append(out, c.Pending[n])
			n++
		}
		c.Pending = c.Pending[n:]
		c.Through = r.First - 1
	}
	i, found := slices.BinarySearchFunc(c.Pending, r.Seq, func(p NumberedReport, s uint64) int { return cmp.Compare(p.Seq, s) })
	switch {
	case r.Seq <= c.Through || found:
	case r.Seq == c.Through+1:
		out = append(out, r)
		c.Through = r.Seq
	case len(c.Pending) < MaxReportsPending:
		c.Pending = slices.Insert(c.Pending, i, r)
	}
	for len(c.Pending) > 0 && c.Pending[0].Seq <= c.Through+1 {
		if c.Pending[0].Seq == c.Through+1 {
			out = append(out, c.Pending[0])
			c.Through++
		}
		c.Pending = c.Pending[1:]
	}
	if len(c.Pending) == 0 {
		c.Pending = nil
	}
	return out
}

func getReportCursor(txn *badger.Txn, id string) (ReportCursor, error) {
	var c ReportCursor
	err := getJSON(txn, nameKey(pReportCursor, id), &c)
	if errors.Is(err, ErrNotFound) {
		return ReportCursor{}, nil
	}
	return c, err
}

// applyNumbered counts the device's numbered reports into its health summary (or, for output
// reports, its output health), each once and in sequence order, and stores the advanced cursor.
func applyNumbered(txn *badger.Txn, d *storedDevice, reports []NumberedReport) error {
	if len(reports) == 0 {
		return nil
	}
	c, err := getReportCursor(txn, d.ID)
	if err != nil {
		return err
	}
	for _, r := range reports {
		for _, a := range c.offer(r) {
			var err error
			if a.Outputs != nil {
				err = attachOutputs(txn, d, *a.Outputs)
			} else {
				err = applyHealth(txn, d, a.Health)
			}
			if err != nil {
				return err
			}
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
