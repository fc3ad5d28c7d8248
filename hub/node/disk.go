package node

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"time"
)

// Disk-space defaults (Config.DiskReserve, Config.DiskCheckInterval).
const (
	DefaultDiskReserve       = 256 << 20
	DefaultDiskCheckInterval = time.Second
)

// ErrDiskFull is the cause Failed reports when the data dir ran short of space.
var ErrDiskFull = errors.New("node: data dir short of space")

// freeBytes returns the bytes an unprivileged writer may still use on dir's file system.
func freeBytes(dir string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}

// diskReserve is the configured reserve, the default for 0; 0 when disabled.
func (n *Node) diskReserve() int64 {
	switch r := n.cfg.DiskReserve; {
	case r == 0:
		return DefaultDiskReserve
	case r < 0:
		return 0
	default:
		return r
	}
}

// watchDisk stops the node when the data dir's file system has less than the reserve left.
//
// badger writes its write-ahead and value logs through memory maps of preallocated (sparse)
// files: on a full disk a write faults (SIGBUS) and the process dies with a stack trace that
// names no file, possibly in the middle of a Raft append. So the node stops while there is still
// room: it hands leadership over, closes its databases cleanly, and Failed reports why, naming
// the directory. The cluster goes on serving from the other nodes; once space is freed, the node
// restarted catches up from the leader.
func (n *Node) watchDisk(ctx context.Context) {
	reserve, every := n.diskReserve(), n.cfg.DiskCheckInterval
	if reserve <= 0 {
		return
	}
	if every <= 0 {
		every = DefaultDiskCheckInterval
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		free, err := freeBytes(n.cfg.DataDir)
		if err != nil {
			n.log.Warn("check free space in the data dir", "dir", n.cfg.DataDir, "err", err)
		} else if free < reserve {
			err := fmt.Errorf("%w: %s has %d MiB free, below the %d MiB reserve: this node stops applying and leaves the cluster "+
				"to its peers; free space and start it again to catch up", ErrDiskFull, n.cfg.DataDir, free>>20, reserve>>20)
			n.log.Error("stopping: data dir short of space", "dir", n.cfg.DataDir, "free_bytes", free, "reserve_bytes", reserve)
			n.fail(err)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// fail closes the node in the background (Close waits for the goroutine that calls fail) and
// makes Failed report err.
func (n *Node) fail(err error) {
	n.failOnce.Do(func() {
		n.failErr = err
		go func() {
			_ = n.Close()
			close(n.failed)
		}()
	})
}

// Failed is closed once the node stopped by itself (FailErr says why); `driftline hub serve`
// then exits with that error.
func (n *Node) Failed() <-chan struct{} { return n.failed }

// FailErr is why the node stopped by itself, once Failed is closed.
func (n *Node) FailErr() error { return n.failErr }
