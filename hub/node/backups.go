package node

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/driftline/driftline/hub/store"
)

// Scheduled backups (`hub serve --backup-dir --backup-every --backup-keep`): the node that leads
// when the interval has passed writes DIR/driftline-<UTC time>-<index>.backup, checks it, and
// deletes the oldest beyond the count to keep. Followers write nothing, so with the flags on every
// node there is one backup per interval wherever the leader is (a shared directory collects them
// all).

// Metric names of scheduled backups.
const (
	metricBackupsTotal      = "driftline_hub_backups_total"
	metricBackupLastSuccess = "driftline_hub_backup_last_success_timestamp_seconds"
)

const backupPrefix, backupSuffix = "driftline-", ".backup"

type backupMetrics struct {
	total *prometheus.CounterVec
	last  prometheus.Gauge
}

func newBackupMetrics(reg prometheus.Registerer) *backupMetrics {
	m := &backupMetrics{
		total: prometheus.NewCounterVec(prometheus.CounterOpts{Name: metricBackupsTotal,
			Help: "Scheduled backups written by this node, by result (ok, error)."}, []string{"result"}),
		last: prometheus.NewGauge(prometheus.GaugeOpts{Name: metricBackupLastSuccess,
			Help: "Unix time of this node's last good scheduled backup (0: none since it started)."}),
	}
	m.total.WithLabelValues("ok")
	m.total.WithLabelValues("error")
	reg.MustRegister(m.total, m.last)
	return m
}

// runBackups writes a backup every cfg.BackupEvery while this node leads, until ctx ends.
func (n *Node) runBackups(ctx context.Context, m *backupMetrics) {
	t := time.NewTicker(n.cfg.BackupEvery)
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
		path, err := n.backupOnce(ctx)
		if err != nil {
			m.total.WithLabelValues("error").Inc()
			n.log.Error("scheduled backup failed", "dir", n.cfg.BackupDir, "err", err)
			continue
		}
		m.total.WithLabelValues("ok").Inc()
		m.last.SetToCurrentTime()
		if err := pruneBackups(n.cfg.BackupDir, n.cfg.BackupKeep); err != nil {
			n.log.Warn("prune old backups", "dir", n.cfg.BackupDir, "err", err)
		}
		n.log.Info("scheduled backup written", "file", path)
	}
}

// backupOnce writes one checked backup into the backup dir and returns its path.
func (n *Node) backupOnce(ctx context.Context) (string, error) {
	if err := os.MkdirAll(n.cfg.BackupDir, 0o700); err != nil {
		return "", err
	}
	f, err := os.CreateTemp(n.cfg.BackupDir, ".partial-*")
	if err != nil {
		return "", err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // after the rename this removes nothing
	defer f.Close()
	ctx, cancel := context.WithTimeout(ctx, time.Hour)
	defer cancel()
	info, err := n.store.Backup(ctx, f, nil)
	if err != nil {
		return "", err
	}
	if err := f.Sync(); err != nil {
		return "", err
	}
	if _, err := f.Seek(0, 0); err != nil {
		return "", err
	}
	if _, err := store.ReadBackup(f, nil, nil); err != nil {
		return "", fmt.Errorf("check the written backup: %w", err)
	}
	name := fmt.Sprintf("%s%s-%020d%s", backupPrefix, info.Created.Format("20060102T150405.000Z"), info.Index, backupSuffix)
	path := filepath.Join(n.cfg.BackupDir, name)
	if err := os.Rename(tmp, path); err != nil {
		return "", err
	}
	return path, nil
}

// pruneBackups deletes the oldest backups in dir beyond keep (0 keeps all). Names sort by time.
func pruneBackups(dir string, keep int) error {
	if keep <= 0 {
		return nil
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var names []string
	for _, e := range entries {
		if !e.IsDir() && strings.HasPrefix(e.Name(), backupPrefix) && strings.HasSuffix(e.Name(), backupSuffix) {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	for len(names) > keep {
		if err := os.Remove(filepath.Join(dir, names[0])); err != nil {
			return err
		}
		names = names[1:]
	}
	return nil
}
