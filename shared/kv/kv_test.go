package kv

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/dgraph-io/badger/v4"
)

// heapAfter returns how much the Go heap in use grew while f ran (after a collection on either
// side, so garbage does not count).
func heapAfter(t *testing.T, f func()) int64 {
	t.Helper()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.GC()
	runtime.ReadMemStats(&after)
	return int64(after.HeapInuse) - int64(before.HeapInuse)
}

// TestRaftLogMemtableHeap: opening the hub's Raft log database costs a small heap whatever the
// data: badger allocates every memtable's arena in full at open, and a live arena also raises the
// garbage collector's heap goal by its size (Server's 64 MiB memtables cost 83 MB each).
func TestRaftLogMemtableHeap(t *testing.T) {
	const limit = 24 << 20
	var db *badger.DB
	grew := heapAfter(t, func() {
		var err error
		if db, err = Open(t.TempDir(), RaftLog); err != nil {
			t.Fatal(err)
		}
	})
	defer db.Close()
	if grew > limit {
		t.Fatalf("opening a RaftLog database grew the heap by %d MiB, want at most %d MiB", grew>>20, limit>>20)
	}
	t.Logf("heap after open: +%d MiB", grew>>20)
}

// TestStateMemtableHeap: opening the hub's state machine database costs a small heap (64 MiB
// memtables cost 83 MB each, live for the process's life, raising the collector's goal too).
func TestStateMemtableHeap(t *testing.T) {
	const limit = 40 << 20
	var db *badger.DB
	grew := heapAfter(t, func() {
		var err error
		if db, err = Open(t.TempDir(), State); err != nil {
			t.Fatal(err)
		}
	})
	defer db.Close()
	if grew > limit {
		t.Fatalf("opening a State database grew the heap by %d MiB, want at most %d MiB", grew>>20, limit>>20)
	}
	t.Logf("heap after open: +%d MiB", grew>>20)
}

// TestRaftLogOpensLargerMemtableLogs: a Raft log left with the memtable log of a release that
// used 64 MiB memtables, holding more than a RaftLog memtable takes (a crash before the memtable
// was flushed), opens with every entry instead of stopping the process in badger's arena assertion.
func TestRaftLogOpensLargerMemtableLogs(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	db, err := badger.Open(Options(src, Server))
	if err != nil {
		t.Fatal(err)
	}
	const n = 40_000 // 40,000 × ~600 bytes: ~24 MB in the memtable, three times a RaftLog one
	val := make([]byte, 512)
	for i := 0; i < n; i += 1000 {
		wb := db.NewWriteBatch()
		for j := i; j < i+1000; j++ {
			if err := wb.Set(fmt.Appendf(nil, "log/%08d", j), val); err != nil {
				t.Fatal(err)
			}
		}
		if err := wb.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	// A crash: the files as they are while the database is open, memtable unflushed.
	copyDir(t, src, dst)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	re, err := Open(dst, RaftLog)
	if err != nil {
		t.Fatal(err)
	}
	defer re.Close()
	got := 0
	if err := re.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			got++
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if got != n {
		t.Fatalf("reopened with %d entries, want %d", got, n)
	}
	mems, _ := filepath.Glob(filepath.Join(dst, "*.mem"))
	for _, m := range mems {
		if fi, err := os.Stat(m); err == nil && fi.Size() > 2*raftLogMemTable {
			t.Errorf("memtable log %s is still %d MiB after the flush", filepath.Base(m), fi.Size()>>20)
		}
	}
}

func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		in, err := os.Open(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out, err := os.Create(filepath.Join(dst, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		// Sparse: badger's value log and memtable log files are mostly holes.
		buf, size := make([]byte, 1<<20), int64(0)
		for {
			k, rerr := io.ReadFull(in, buf)
			if k > 0 {
				if bytes.Count(buf[:k], []byte{0}) == k {
					_, err = out.Seek(int64(k), io.SeekCurrent)
				} else {
					_, err = out.Write(buf[:k])
				}
				if err != nil {
					t.Fatal(err)
				}
				size += int64(k)
			}
			if rerr != nil {
				break
			}
		}
		if err := out.Truncate(size); err != nil {
			t.Fatal(err)
		}
		in.Close()
		if err := out.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
