package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/driftline/driftline/hub/api"
	"github.com/driftline/driftline/hub/state"
	"github.com/driftline/driftline/hub/store"
	"github.com/driftline/driftline/shared/kv"
)

// opsAdapter is storeAdapter with the operations endpoints (api.Operator): backup, leadership
// transfer, node report.
type opsAdapter struct {
	storeAdapter
	dataDir string
}

var _ api.Operator = opsAdapter{}

func (a opsAdapter) Backup(ctx context.Context, w io.Writer, start func(api.BackupHeader)) error {
	_, err := a.s.Backup(ctx, w, func(i store.BackupInfo) {
		start(api.BackupHeader{Node: i.Node, Index: i.Index, Term: i.Term, EstimatedBytes: i.EstimatedBytes})
	})
	return err
}

func (a opsAdapter) TransferLeadership(ctx context.Context, id string) (string, error) {
	leader, err := a.s.TransferLeadership(ctx, id)
	switch {
	case errors.Is(err, store.ErrUnknownNode):
		return "", fmt.Errorf("%w: %w", state.ErrNotFound, err)
	case errors.Is(err, store.ErrConfig):
		return "", fmt.Errorf("%w: %w", state.ErrInvalid, err)
	}
	return leader, err
}

func (a opsAdapter) NodeReport() api.NodeReport {
	st := a.s.Status()
	r := api.NodeReport{ID: a.s.NodeID(), State: st.State, Term: st.Term, CommitIndex: st.CommitIndex,
		AppliedIndex: st.AppliedIndex, LastLogIndex: a.s.LastLogIndex(), Disk: diskUse(a.dataDir)}
	if st.LeaderID != "" {
		r.Leader = &api.NodeRef{ID: st.LeaderID, HTTP: st.LeaderHTTP}
	}
	if si, ok := a.s.LastSnapshot(); ok {
		r.LastSnapshot = &api.SnapshotRef{Index: si.Index, Term: si.Term, Time: si.Time, Bytes: si.Size}
	}
	return r
}

// diskUse sums the data dir by part (allocated blocks, as du does: badger's value-log and
// memtable files are preallocated sparse files whose apparent size is their maximum) and asks the
// file system for its free space.
func diskUse(dir string) api.DiskUse {
	d := api.DiskUse{DataDir: dir, Bytes: map[string]int64{"db": 0, "raftlog": 0, "raft": 0, "other": 0}}
	_ = filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return nil //nolint:nilerr // a file that vanished mid-walk (badger compaction) counts as 0
		}
		info, err := e.Info()
		if err != nil {
			return nil //nolint:nilerr
		}
		part := "other"
		if rel, err := filepath.Rel(dir, path); err == nil {
			if top, _, ok := strings.Cut(rel, string(filepath.Separator)); ok {
				if _, known := d.Bytes[top]; known {
					part = top
				}
			}
		}
		size := info.Size()
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			size = st.Blocks * 512 // allocated, as du counts: badger preallocates sparse files
		}
		d.Bytes[part] += size
		d.TotalBytes += size
		return nil
	})
	var sfs syscall.Statfs_t
	if err := syscall.Statfs(dir, &sfs); err == nil {
		d.FreeBytes = sfs.Bavail * uint64(sfs.Bsize) //nolint:gosec,unconvert // Bsize is positive
		d.SizeBytes = sfs.Blocks * uint64(sfs.Bsize) //nolint:gosec,unconvert
	}
	return d
}

// Metric names of the node's disk gauges.
const (
	metricDiskUsed = "driftline_hub_disk_used_bytes"
	metricDiskFree = "driftline_hub_disk_free_bytes"
	metricDiskSize = "driftline_hub_disk_size_bytes"
)

// diskCollector reports diskUse at scrape time, walking the data dir at most every 15 s.
type diskCollector struct {
	dir              string
	used, free, size *prometheus.Desc
	mu               sync.Mutex
	at               time.Time
	last             api.DiskUse
}

func newDiskCollector(dir string) *diskCollector {
	return &diskCollector{dir: dir,
		used: prometheus.NewDesc(metricDiskUsed, "Bytes of the data dir by part (db, raftlog, raft snapshots, other).", []string{"part"}, nil),
		free: prometheus.NewDesc(metricDiskFree, "Bytes free for unprivileged users on the file system of the data dir.", nil, nil),
		size: prometheus.NewDesc(metricDiskSize, "Size in bytes of the file system of the data dir.", nil, nil),
	}
}

func (c *diskCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.used
	ch <- c.free
	ch <- c.size
}

func (c *diskCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	if time.Since(c.at) > 15*time.Second {
		c.last, c.at = diskUse(c.dir), time.Now()
	}
	d := c.last
	c.mu.Unlock()
	for part, b := range d.Bytes {
		ch <- prometheus.MustNewConstMetric(c.used, prometheus.GaugeValue, float64(b), part)
	}
	if d.SizeBytes > 0 {
		ch <- prometheus.MustNewConstMetric(c.free, prometheus.GaugeValue, float64(d.FreeBytes))
		ch <- prometheus.MustNewConstMetric(c.size, prometheus.GaugeValue, float64(d.SizeBytes))
	}
}

// DefaultNodeID is the node id `hub serve` uses when none is given: derived from the Raft address.
func DefaultNodeID(raftAddr string) string {
	return "hub-" + strings.NewReplacer(":", "-", ".", "-").Replace(raftAddr)
}

// RestoreConfig says where Restore seeds a node.
type RestoreConfig struct {
	// DataDir is the new node's data dir; it must hold no database yet.
	DataDir string
	// NodeID and RaftAddr are the values the node will be started with (`hub serve --node-id
	// --raft`); an empty NodeID means DefaultNodeID(RaftAddr).
	NodeID, RaftAddr string
	// Progress, when not nil, is called with the bytes read so far.
	Progress func(int64)
}

// Restore seeds DataDir from a backup so that `hub serve` on it starts a one-node cluster holding
// the backed-up state (registry, artifacts, lineage, devices, tokens, signing keys, audit chain).
// Other nodes then join it with --join. The data dir's signing key is not in the backup: copy the
// old one to DATA/signing.key to keep signing with it, or let the node make a new one (the old
// public keys stay registered, so old signatures still verify).
func Restore(cfg RestoreConfig, r io.Reader) (store.BackupInfo, error) {
	if cfg.DataDir == "" || cfg.RaftAddr == "" {
		return store.BackupInfo{}, errors.New("restore: data dir and raft address are required")
	}
	if cfg.NodeID == "" {
		cfg.NodeID = DefaultNodeID(cfg.RaftAddr)
	}
	for _, part := range []string{"db", "raftlog", "raft"} {
		if entries, err := os.ReadDir(filepath.Join(cfg.DataDir, part)); err == nil && len(entries) > 0 {
			return store.BackupInfo{}, fmt.Errorf("restore: %s already holds a node's state (%s is not empty): restore into a new data dir",
				cfg.DataDir, part)
		}
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return store.BackupInfo{}, fmt.Errorf("restore: data dir: %w", err)
	}
	logDB, err := kv.Open(filepath.Join(cfg.DataDir, "raftlog"), kv.RaftLog)
	if err != nil {
		return store.BackupInfo{}, fmt.Errorf("restore: %w", err)
	}
	info, err := store.Seed(store.SeedConfig{LogDB: logDB, Dir: filepath.Join(cfg.DataDir, "raft"), NodeID: cfg.NodeID,
		RaftAddr: cfg.RaftAddr, Progress: cfg.Progress}, r)
	if cerr := logDB.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("restore: close raft log: %w", cerr)
	}
	if err != nil {
		// Leave no half-made node behind: a later serve would bootstrap an empty cluster on it.
		_ = os.RemoveAll(filepath.Join(cfg.DataDir, "raftlog"))
		_ = os.RemoveAll(filepath.Join(cfg.DataDir, "raft"))
		return info, err
	}
	return info, nil
}

// registerOps adds the disk gauges to the node's registry.
func (n *Node) registerOps() {
	n.registry.MustRegister(newDiskCollector(n.cfg.DataDir), newFleetCollector(n.Reader()))
}
