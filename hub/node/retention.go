package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/driftline/driftline/hub/command"
	"github.com/driftline/driftline/hub/state"
)

// Retention (`hub serve --runs-retention --audit-retention --audit-archive-dir
// --retention-every`): the node that leads when the interval has passed proposes RetentionPrune
// commands, so every node deletes the same keys at the same Raft index. Closed lineage runs edges
// (with the drift and validation totals on them) older than --runs-retention go; audit entries
// older than --audit-retention are first written to an export in --audit-archive-dir (checked
// after writing, fsynced) and only then pruned through the export's last entry, which becomes the
// audit checkpoint the kept log verifies from. Audit retention without an archive dir is refused
// at start: the hub never deletes audit entries that are not exported.

// DefaultRetentionEvery is how often the leader applies retention when --retention-every is 0.
const DefaultRetentionEvery = time.Hour

// Metric names of retention.
const (
	metricRetentionPruned = "driftline_hub_retention_pruned_total"
	metricRetentionRuns   = "driftline_hub_retention_runs_total"
)

// auditExportPrefix and auditExportSuffix frame the names of audit exports:
// audit-<first seq>-<last seq>.jsonl, so a lexical sort is the chain's order.
const auditExportPrefix, auditExportSuffix = "audit-", ".jsonl"

type retentionMetrics struct {
	pruned *prometheus.CounterVec
	runs   *prometheus.CounterVec
}

func newRetentionMetrics(reg prometheus.Registerer) *retentionMetrics {
	m := &retentionMetrics{
		pruned: prometheus.NewCounterVec(prometheus.CounterOpts{Name: metricRetentionPruned,
			Help: "Items deleted by retention commands this node proposed, by what (runs_edges, audit_entries)."}, []string{"what"}),
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: metricRetentionRuns,
			Help: "Retention passes this node ran as leader, by result (ok, error)."}, []string{"result"}),
	}
	for _, w := range []string{"runs_edges", "audit_entries"} {
		m.pruned.WithLabelValues(w)
	}
	m.runs.WithLabelValues("ok")
	m.runs.WithLabelValues("error")
	reg.MustRegister(m.pruned, m.runs)
	return m
}

// checkRetention validates the retention settings at start.
func checkRetention(cfg Config) error {
	switch {
	case cfg.RunsRetention < 0, cfg.AuditRetention < 0, cfg.RetentionEvery < 0:
		return errors.New("node: retention durations must not be negative")
	case cfg.AuditRetention > 0 && cfg.AuditArchiveDir == "":
		return errors.New("node: --audit-retention needs --audit-archive-dir: audit entries are exported there before they are pruned")
	}
	return nil
}

// runRetention applies retention every cfg.RetentionEvery while this node leads, until ctx ends.
func (n *Node) runRetention(ctx context.Context, m *retentionMetrics) {
	every := n.cfg.RetentionEvery
	if every == 0 {
		every = DefaultRetentionEvery
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !n.store.IsLeader() {
			continue
		}
		res, err := n.retentionOnce(ctx, time.Now())
		m.pruned.WithLabelValues("runs_edges").Add(float64(res.RunsEdges))
		m.pruned.WithLabelValues("audit_entries").Add(float64(res.AuditEntries))
		if err != nil {
			m.runs.WithLabelValues("error").Inc()
			n.log.Error("retention failed", "err", err)
			continue
		}
		m.runs.WithLabelValues("ok").Inc()
		if res.RunsEdges > 0 || res.AuditEntries > 0 {
			n.log.Info("retention pruned", "runs_edges", res.RunsEdges, "audit_entries", res.AuditEntries,
				"audit_checkpoint", res.Checkpoint.Seq)
		}
	}
}

// retentionOnce applies the configured retention as of now: it proposes RetentionPrune commands
// until nothing older than the cutoffs is left. It returns the totals deleted.
func (n *Node) retentionOnce(ctx context.Context, now time.Time) (state.RetentionResult, error) {
	var total state.RetentionResult
	if err := n.store.Barrier(ctx); err != nil {
		return total, err
	}
	r := n.Reader()
	if d := n.cfg.RunsRetention; d > 0 {
		before := now.Add(-d).UnixMilli()
		if k, err := r.ClosedRunsEdges(before, 1); err != nil {
			return total, err
		} else if k > 0 {
			if err := n.prune(ctx, state.RetentionPrune{RunsBefore: before}, &total); err != nil {
				return total, err
			}
		}
	}
	if d := n.cfg.AuditRetention; d > 0 {
		cp, err := r.AuditCheckpoint()
		if err != nil {
			return total, err
		}
		seq, hash, err := r.AuditOlderThan(now.Add(-d).UnixMilli())
		if err != nil || seq <= cp.Seq {
			return total, err
		}
		path, err := n.exportAudit(cp, seq)
		if err != nil {
			return total, fmt.Errorf("export audit entries %d-%d: %w", cp.Seq+1, seq, err)
		}
		n.log.Info("audit entries exported", "file", path, "first", cp.Seq+1, "last", seq)
		if err := n.prune(ctx, state.RetentionPrune{AuditThrough: seq, AuditHash: hash}, &total); err != nil {
			return total, err
		}
	}
	return total, nil
}

// prune proposes c until its result says nothing more is left, adding what it deleted to total.
func (n *Node) prune(ctx context.Context, c state.RetentionPrune, total *state.RetentionResult) error {
	for {
		env, err := command.New(command.TypeRetentionPrune, "", 0, "hub:"+n.cfg.NodeID, c)
		if err != nil {
			return err
		}
		out, err := n.store.Apply(ctx, env)
		if err != nil {
			return err
		}
		var res state.RetentionResult
		if b, err := json.Marshal(out); err != nil || json.Unmarshal(b, &res) != nil {
			return fmt.Errorf("retention prune: unexpected result %T", out)
		}
		total.RunsEdges += res.RunsEdges
		total.AuditEntries += res.AuditEntries
		total.Checkpoint = res.Checkpoint
		if !res.More {
			return nil
		}
	}
}

// exportAudit writes the kept audit entries after cp through last into the archive dir, checks
// the file and syncs it, and returns its path.
func (n *Node) exportAudit(cp state.AuditCheckpoint, last uint64) (string, error) {
	dir := n.cfg.AuditArchiveDir
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	f, err := os.CreateTemp(dir, ".partial-audit-*")
	if err != nil {
		return "", err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // after the rename this removes nothing
	defer f.Close()
	x, err := state.NewAuditExportWriter(f, cp.Seq+1, cp.Hash)
	if err != nil {
		return "", err
	}
	if err := n.Reader().AuditRange(cp.Seq+1, last, x.Add); err != nil {
		return "", err
	}
	tr, err := x.Close()
	if err != nil {
		return "", err
	}
	if tr.LastSeq != last {
		return "", fmt.Errorf("export ends at entry %d, not %d", tr.LastSeq, last)
	}
	if err := f.Sync(); err != nil {
		return "", err
	}
	if _, err := f.Seek(0, 0); err != nil {
		return "", err
	}
	if _, _, err := state.ReadAuditExport(f, nil); err != nil {
		return "", fmt.Errorf("check the written export: %w", err)
	}
	path := filepath.Join(dir, AuditExportName(cp.Seq+1, last))
	if err := os.Rename(tmp, path); err != nil {
		return "", err
	}
	if d, err := os.Open(dir); err == nil { // the rename survives a crash
		d.Sync()
		d.Close()
	}
	return path, nil
}

// AuditExportName is the file name of an export of audit entries first to last.
func AuditExportName(first, last uint64) string {
	return fmt.Sprintf("%s%020d-%020d%s", auditExportPrefix, first, last, auditExportSuffix)
}
