//go:build linux

package modelstore

import (
	"os"

	"golang.org/x/sys/unix"
)

// startWriteback asks the kernel to start writing [off, off+n) of f to disk now, without
// waiting for it (sync_file_range with SYNC_FILE_RANGE_WRITE). A large model file written in one
// go then reaches its final fsync with little left dirty, instead of the whole file's writeback
// happening inside that fsync, and its dirty pages never pile up. It is a hint: failure is
// ignored, the fsync still makes the file durable.
func startWriteback(f *os.File, off, n int64) {
	_ = unix.SyncFileRange(int(f.Fd()), off, n, unix.SYNC_FILE_RANGE_WRITE)
}
