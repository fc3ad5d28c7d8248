package cli

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/spf13/cobra"

	"github.com/driftline/driftline/hub/state"
)

// auditCheckpoint fetches where the kept audit log starts (zero: nothing pruned, or a hub of a
// release without retention, which answers 404).
func auditCheckpoint(a *app, c *client) (state.AuditCheckpoint, error) {
	var cp state.AuditCheckpoint
	_, err := c.JSON(a.ctx, http.MethodGet, "/api/v1/audit/checkpoint", nil, nil, &cp)
	var ae *APIError
	if errors.As(err, &ae) && ae.Status == http.StatusNotFound {
		return state.AuditCheckpoint{}, nil
	}
	return cp, err
}

func (a *app) auditExport() *cobra.Command {
	var through uint64
	var before string
	var prune bool
	cmd := &cobra.Command{
		Use:   "export FILE [--through SEQ | --before T] [--prune]",
		Short: "Write the oldest kept audit entries to FILE (a checked, hash-chained export) and, with --prune, delete them from the hub",
		Long: "export writes the kept audit log from its oldest entry through --through (or the last entry before --before, or the\n" +
			"head) to FILE: a header, one JSON entry a line, and a trailer with the last entry's seq and hash and the file's\n" +
			"SHA-256. The file is checked after writing. With --prune the hub then deletes the exported entries; the last\n" +
			"hash becomes the checkpoint the kept log verifies from (`audit verify`, `audit verify --export FILE...`).",
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var beforeMS int64
			if before != "" {
				if through != 0 {
					return usagef("--through and --before exclude each other")
				}
				t, err := time.Parse(time.RFC3339, before)
				if err != nil {
					return usagef("--before %q: want an RFC 3339 time such as 2026-01-01T00:00:00Z", before)
				}
				beforeMS = t.UnixMilli()
			}
			path := args[0]
			if _, err := os.Stat(path); err == nil {
				return usagef("%s exists: an export never overwrites a file", path)
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			cp, err := auditCheckpoint(a, c)
			if err != nil {
				return err
			}
			if through != 0 && through <= cp.Seq {
				return usagef("--through %d: entries up to %d are already pruned", through, cp.Seq)
			}
			tr, err := writeAuditExport(a, c, path, cp, through, beforeMS)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stderr, "exported audit entries %d-%d (%d) to %s, last hash %s\n", cp.Seq+1, tr.LastSeq, tr.Entries, path, tr.LastHash)
			if !prune {
				return nil
			}
			var res state.RetentionResult
			raw, err := c.JSON(a.ctx, http.MethodPost, "/api/v1/audit/prune", nil,
				map[string]any{"through_seq": tr.LastSeq, "through_hash": tr.LastHash}, &res)
			if err != nil {
				return fmt.Errorf("prune (the export %s is complete; run the prune again with the same file): %w", path, err)
			}
			if a.jsonOut() {
				return printRaw(a.stdout, raw)
			}
			fmt.Fprintf(a.stdout, "pruned %d audit entries; the kept log starts after seq %d, hash %s\n", res.AuditEntries, res.Checkpoint.Seq, res.Checkpoint.Hash)
			return nil
		},
	}
	f := cmd.Flags()
	f.Uint64Var(&through, "through", 0, "last entry (seq) to export")
	f.StringVar(&before, "before", "", "export the entries older than this time (RFC 3339)")
	f.BoolVar(&prune, "prune", false, "after the export is written and checked, delete its entries from the hub (admin)")
	return cmd
}

// writeAuditExport writes the kept entries after cp through through (or those before beforeMS,
// or all) to path: into path.partial first, synced, read back and checked, then renamed.
func writeAuditExport(a *app, c *client, path string, cp state.AuditCheckpoint, through uint64, beforeMS int64) (state.AuditExportTrailer, error) {
	var tr state.AuditExportTrailer
	tmp := path + ".partial"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o600)
	if err != nil {
		return tr, usagef("%v", err)
	}
	defer os.Remove(tmp) // after the rename this removes nothing
	defer f.Close()
	x, err := state.NewAuditExportWriter(f, cp.Seq+1, cp.Hash)
	if err != nil {
		return tr, err
	}
	q := url.Values{"limit": {"1000"}}
	for done := false; !done; {
		var p auditPage
		if _, err := c.JSON(a.ctx, http.MethodGet, "/api/v1/audit", q, nil, &p); err != nil {
			return tr, err
		}
		for _, e := range p.Items {
			if (through != 0 && e.Seq > through) || (beforeMS != 0 && e.Time >= beforeMS) {
				done = true
				break
			}
			if err := x.Add(e); err != nil {
				return tr, fmt.Errorf("%w: %v", ErrAuditBroken, err)
			}
			if e.Seq == through {
				done = true
				break
			}
		}
		if p.NextCursor == nil || *p.NextCursor == "" || len(p.Items) == 0 {
			break
		}
		q.Set("cursor", *p.NextCursor)
	}
	if tr, err = x.Close(); err != nil {
		return tr, fmt.Errorf("%w: nothing to export", ErrRefused)
	}
	if through != 0 && tr.LastSeq != through {
		return tr, fmt.Errorf("%w: the log ends at entry %d, before --through %d", ErrRefused, tr.LastSeq, through)
	}
	if err := f.Sync(); err != nil {
		return tr, err
	}
	if _, err := f.Seek(0, 0); err != nil {
		return tr, err
	}
	if _, _, err := state.ReadAuditExport(f, nil); err != nil {
		return tr, fmt.Errorf("check the written export: %w", err)
	}
	return tr, os.Rename(tmp, path)
}

// exportChain is what verifyExports found: how many files, where they end, the hash of the
// entry at the hub's checkpoint, and the hashes of the entries after it (to compare with the
// kept log).
type exportChain struct {
	files    int
	lastSeq  uint64
	lastHash string
	atCP     string
	after    map[uint64]string
}

// verifyExports reads the export files in chain order and checks each (state.ReadAuditExport),
// and that together they form one chain from seq 1 without gaps. Files may overlap: a retention
// pass interrupted between its export and its prune leaves an export that the next pass covers
// again (same first seq, or a first seq inside it when part of the prune went through). A file
// that starts inside the part already covered must start from the hash the chain has there, and
// one wholly inside it must end on the chain's hash at its last seq. cpSeq is the hub's
// checkpoint: the hash of entry cpSeq is kept, and those of the entries after it (exports taken
// without --prune) to compare with the kept log.
func verifyExports(paths []string, cpSeq uint64) (exportChain, error) {
	type file struct {
		path string
		hdr  state.AuditExportHeader
		tr   state.AuditExportTrailer
	}
	var files []file
	var expanded []string
	for _, p := range paths {
		if st, err := os.Stat(p); err == nil && st.IsDir() {
			m, _ := filepath.Glob(filepath.Join(p, "audit-*.jsonl"))
			expanded = append(expanded, m...)
			continue
		}
		expanded = append(expanded, p)
	}
	ch := exportChain{after: map[uint64]string{}}
	boundary := map[uint64]string{0: ""} // hashes of the chain at every file's first seq - 1 and last seq
	for _, p := range expanded {
		f, err := os.Open(p)
		if err != nil {
			return ch, usagef("%v", err)
		}
		hdr, tr, err := state.ReadAuditExport(f, nil)
		f.Close()
		if err != nil {
			return ch, fmt.Errorf("%w: %s: %v", ErrAuditBroken, p, err)
		}
		files = append(files, file{p, hdr, tr})
	}
	if len(files) == 0 {
		return ch, usagef("--export: no audit export files")
	}
	wanted := map[uint64]bool{}
	for _, fl := range files {
		wanted[fl.hdr.FirstSeq-1], wanted[fl.tr.LastSeq] = true, true
	}
	sort.Slice(files, func(i, j int) bool {
		if files[i].hdr.FirstSeq != files[j].hdr.FirstSeq {
			return files[i].hdr.FirstSeq < files[j].hdr.FirstSeq
		}
		return files[i].tr.LastSeq > files[j].tr.LastSeq
	})
	for _, fl := range files {
		if fl.hdr.FirstSeq > ch.lastSeq+1 {
			return ch, fmt.Errorf("%w: %s starts at entry %d; the exports before it end at entry %d (an export is missing)",
				ErrAuditBroken, fl.path, fl.hdr.FirstSeq, ch.lastSeq)
		}
		if h, ok := boundary[fl.hdr.FirstSeq-1]; !ok || h != fl.hdr.PrevHash {
			return ch, fmt.Errorf("%w: %s starts after hash %q, but entry %d of the exports before it has hash %q",
				ErrAuditBroken, fl.path, fl.hdr.PrevHash, fl.hdr.FirstSeq-1, h)
		}
		if fl.tr.LastSeq <= ch.lastSeq { // wholly inside what is covered: it must agree at its end
			if h := boundary[fl.tr.LastSeq]; h != fl.tr.LastHash {
				return ch, fmt.Errorf("%w: %s ends on hash %s at entry %d, the other exports on %s",
					ErrAuditBroken, fl.path, fl.tr.LastHash, fl.tr.LastSeq, h)
			}
			ch.files++
			continue
		}
		f, err := os.Open(fl.path)
		if err != nil {
			return ch, usagef("%v", err)
		}
		covered := ch.lastSeq
		_, tr, err := state.ReadAuditExport(f, func(e state.AuditEntry) error {
			if e.Seq <= covered {
				return nil // the same chain from the same prev hash: the same entries
			}
			if wanted[e.Seq] {
				boundary[e.Seq] = e.Hash
			}
			if e.Seq == cpSeq {
				ch.atCP = e.Hash
			} else if e.Seq > cpSeq {
				ch.after[e.Seq] = e.Hash
			}
			return nil
		})
		f.Close()
		if err != nil {
			return ch, fmt.Errorf("%w: %s: %v", ErrAuditBroken, fl.path, err)
		}
		ch.lastSeq, ch.lastHash = tr.LastSeq, tr.LastHash
		ch.files++
	}
	return ch, nil
}
