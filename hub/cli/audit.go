package cli

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/driftline/driftline/hub/state"
)

// auditPage is one page of GET /api/v1/audit.
type auditPage struct {
	Items      []state.AuditEntry `json:"items"`
	NextCursor *string            `json:"next_cursor"`
}

func (a *app) auditCmd() *cobra.Command {
	var since, actor, cursor string
	var all bool
	var limit int
	cmd := &cobra.Command{
		Use:   "audit [--since T] [--actor A] [--all]",
		Short: "Show the audit log, oldest first: one page, or every page with --all",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			if limit < 1 || limit > 1000 {
				return usagef("--limit %d: want 1 to 1000", limit)
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			q := url.Values{}
			if since != "" {
				q.Set("since", since)
			}
			if actor != "" {
				q.Set("actor", actor)
			}
			var entries []state.AuditEntry
			var next *string
			if all {
				items, err := c.listAll(a.ctx, "/api/v1/audit", q)
				if err != nil {
					return err
				}
				if a.jsonOut() {
					return printList(a.stdout, items)
				}
				if entries, err = decodeItems[state.AuditEntry](items); err != nil {
					return err
				}
			} else {
				q.Set("limit", strconv.Itoa(limit))
				if cursor != "" {
					q.Set("cursor", cursor)
				}
				var p auditPage
				raw, err := c.JSON(a.ctx, http.MethodGet, "/api/v1/audit", q, nil, &p)
				if err != nil {
					return err
				}
				if a.jsonOut() {
					return printRaw(a.stdout, raw)
				}
				entries, next = p.Items, p.NextCursor
			}
			t := newTable(a.stdout, "SEQ", "TIME", "ACTOR", "ACTION", "OBJECT", "RAFT INDEX")
			for _, e := range entries {
				t.row(strconv.FormatUint(e.Seq, 10), when(e.Time), e.Actor, e.Action, e.Object, strconv.FormatUint(e.Index, 10))
			}
			if err := t.flush(); err != nil {
				return err
			}
			if next != nil && *next != "" {
				fmt.Fprintf(a.stderr, "more entries: --cursor %s, or --all\n", *next)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&since, "since", "", "only entries at or after T (RFC 3339 or Unix milliseconds)")
	f.StringVar(&actor, "actor", "", "only entries by this actor")
	f.BoolVar(&all, "all", false, "follow every page")
	f.IntVar(&limit, "limit", 100, "entries per page without --all")
	f.StringVar(&cursor, "cursor", "", "continue after a previous page")
	cmd.AddCommand(a.auditVerify(), a.auditExport())
	return cmd
}

// chainResult is what audit verify found; -o json prints it.
type chainResult struct {
	OK       bool   `json:"ok"`
	Entries  int    `json:"entries"`
	HeadSeq  uint64 `json:"head_seq"`
	HeadHash string `json:"head_hash"`
	BadSeq   uint64 `json:"bad_seq,omitempty"`
	Reason   string `json:"reason,omitempty"`
	// CheckpointSeq is where the kept log starts (entries up to it were pruned); Exports the
	// export files verified with --export, which then cover entries 1 to CheckpointSeq.
	CheckpointSeq uint64 `json:"checkpoint_seq,omitempty"`
	Exports       int    `json:"exports,omitempty"`
}

func (a *app) auditVerify() *cobra.Command {
	var exports []string
	cmd := &cobra.Command{
		Use:   "verify [--export FILE|DIR ...]",
		Short: "Fetch the whole audit log and check its hash chain (exit 1 naming the first bad entry)",
		Long: "verify walks the kept audit log from the hub's checkpoint (seq 1 when nothing was pruned) and checks every\n" +
			"hash and link. With --export (files or directories of audit-*.jsonl) it also checks the exports as one chain\n" +
			"from seq 1 and that they end exactly where the kept log starts: the whole history, pruned part included.",
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			cp, err := auditCheckpoint(a, c)
			if err != nil {
				return err
			}
			var ch *exportChain
			if len(exports) > 0 {
				x, err := verifyExports(exports, cp.Seq)
				if err != nil {
					return err
				}
				if x.lastSeq < cp.Seq {
					return fmt.Errorf("%w: the exports end at entry %d but the hub pruned through %d: an export is missing", ErrAuditBroken, x.lastSeq, cp.Seq)
				}
				if cp.Seq > 0 && x.atCP != cp.Hash {
					return fmt.Errorf("%w: entry %d has hash %s in the exports but %s in the hub's checkpoint", ErrAuditBroken, cp.Seq, x.atCP, cp.Hash)
				}
				ch = &x
			}
			res, err := verifyAudit(a, c, cp, ch)
			if err != nil {
				return err
			}
			if a.jsonOut() {
				b, _ := json.Marshal(res)
				if err := printRaw(a.stdout, b); err != nil {
					return err
				}
			} else if res.OK {
				fmt.Fprintf(a.stdout, "audit chain holds: %d entries, head seq %d hash %s\n", res.Entries, res.HeadSeq, res.HeadHash)
				switch {
				case ch != nil:
					fmt.Fprintf(a.stdout, "from seq 1: %d export files hold entries 1-%d and chain into the kept log\n", ch.files, ch.lastSeq)
				case cp.Seq > 0:
					fmt.Fprintf(a.stdout, "entries 1-%d were pruned: checked from the checkpoint (hash %s); --export FILE... checks them too\n", cp.Seq, cp.Hash)
				}
			}
			if !res.OK {
				return fmt.Errorf("%w at seq %d: %s", ErrAuditBroken, res.BadSeq, res.Reason)
			}
			return nil
		},
	}
	cmd.Flags().StringSliceVar(&exports, "export", nil, "audit export files or directories to check with the kept log (repeat or comma-separate)")
	return cmd
}

// verifyAudit walks the kept log page by page from the checkpoint cp (seq 1 and hash "" when
// nothing was pruned), carrying the previous entry's hash across pages, and checks the chain with
// state.VerifyChain and that sequence numbers run on without gaps. Entries that the exports ch
// also hold must have the same hash there.
func verifyAudit(a *app, c *client, cp state.AuditCheckpoint, ch *exportChain) (chainResult, error) {
	res := chainResult{CheckpointSeq: cp.Seq}
	if ch != nil {
		res.Exports = ch.files
	}
	q := url.Values{"limit": {"1000"}}
	prev, want := cp.Hash, cp.Seq+1
	for {
		var p auditPage
		if _, err := c.JSON(a.ctx, http.MethodGet, "/api/v1/audit", q, nil, &p); err != nil {
			return res, err
		}
		for _, e := range p.Items {
			if e.Seq != want {
				res.BadSeq, res.Reason = e.Seq, fmt.Sprintf("expected seq %d: entries are missing or out of order", want)
				return res, nil
			}
			if ch != nil {
				if h, ok := ch.after[e.Seq]; ok && h != e.Hash {
					res.BadSeq, res.Reason = e.Seq, fmt.Sprintf("hash %s differs from the export's %s", e.Hash, h)
					return res, nil
				}
			}
			want++
		}
		if i, err := state.VerifyChain(prev, p.Items); err != nil {
			res.BadSeq, res.Reason = p.Items[i].Seq, err.Error()
			return res, nil
		}
		res.Entries += len(p.Items)
		if n := len(p.Items); n > 0 {
			prev = p.Items[n-1].Hash
			res.HeadSeq, res.HeadHash = p.Items[n-1].Seq, prev
		}
		if p.NextCursor == nil || *p.NextCursor == "" {
			res.OK = true
			return res, nil
		}
		if q.Get("cursor") == *p.NextCursor || len(p.Items) == 0 {
			return res, fmt.Errorf("%w: the audit log repeats cursor %q", ErrUnavailable, *p.NextCursor)
		}
		q.Set("cursor", *p.NextCursor)
	}
}
