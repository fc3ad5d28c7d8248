package store_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/dgraph-io/badger/v4"
	"github.com/hashicorp/raft"

	"github.com/driftline/driftline/hub/store"
	"github.com/driftline/driftline/hub/store/storetest"
	"github.com/driftline/driftline/internal/freeport"
	"github.com/driftline/driftline/internal/testhelp"
	"github.com/driftline/driftline/shared/kv"
)

// backupUnderLoad takes a backup from the leader of a 3-node cluster while writers keep writing,
// and returns it with the keys acknowledged before the backup began.
func backupUnderLoad(t *testing.T) ([]byte, []string, store.BackupInfo) {
	c := storetest.MakeCluster(t, 3, kvProcessor)
	lead := c.Leader().Store
	for i := range 200 {
		mustPut(t, lead, fmt.Sprintf("pre-%03d", i), strings.Repeat("v", i))
	}
	var (
		stop    atomic.Bool
		wg      sync.WaitGroup
		written atomic.Int64
	)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; !stop.Load(); n++ {
				if _, err := lead.Apply(ctxT(t), storetest.Put(fmt.Sprintf("load-%d-%05d", w, n), "x")); err == nil {
					written.Add(1)
				}
			}
		}()
	}
	testhelp.WaitFor(t, storetest.WaitTimeout, "load", func() bool { return written.Load() > 100 })
	var buf bytes.Buffer
	started := false
	info, err := lead.Backup(ctxT(t), &buf, func(store.BackupInfo) { started = true })
	stop.Store(true)
	wg.Wait()
	if err != nil || !started {
		t.Fatalf("backup: %v (start called %v)", err, started)
	}
	pre := make([]string, 200)
	for i := range pre {
		pre[i] = fmt.Sprintf("pre-%03d", i)
	}
	t.Logf("backup of %d records, %d bytes at index %d, %d writes under load", info.Records, buf.Len(), info.Index, written.Load())
	if info.Bytes != int64(buf.Len()) || info.Index == 0 || info.Term == 0 {
		t.Fatalf("info %+v for %d bytes", info, buf.Len())
	}
	return buf.Bytes(), pre, info
}

func TestBackupSeedRoundTrip(t *testing.T) {
	file, pre, info := backupUnderLoad(t)
	got, err := store.ReadBackup(bytes.NewReader(file), nil, nil)
	if err != nil || got.Index != info.Index || got.Records != info.Records {
		t.Fatalf("read back: %+v, %v; want %+v", got, err, info)
	}

	dir := t.TempDir()
	raftAddr := freeport.Addr(t)
	db, err := badger.Open(kv.Options(filepath.Join(dir, "db"), kv.Server).WithNumVersionsToKeep(1))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// Seeded with an address the node will not be served on: the leader corrects it.
	seeded, err := store.Seed(store.SeedConfig{LogDB: db, Dir: filepath.Join(dir, "raft"), NodeID: "r0", RaftAddr: "127.0.0.1:1"}, bytes.NewReader(file))
	if err != nil {
		t.Fatalf("seed: %v", err)
	}
	if seeded.Index != info.Index {
		t.Fatalf("seeded index %d, backup %d", seeded.Index, info.Index)
	}
	// A second seed into the same place is refused: it would fork the node's history.
	if _, err := store.Seed(store.SeedConfig{LogDB: db, Dir: filepath.Join(dir, "raft"), NodeID: "r0", RaftAddr: raftAddr}, bytes.NewReader(file)); err == nil {
		t.Fatal("seed over existing state accepted")
	}

	s, err := store.Open(store.Config{DB: db, Dir: filepath.Join(dir, "raft"), NodeID: "r0", RaftBind: raftAddr,
		HTTPAddr: "127.0.0.1:1", Bootstrap: true, Processor: storetest.KVProcessor{}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Tune: storetest.FastTimeouts})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	testhelp.WaitFor(t, storetest.WaitTimeout, "restored node leads", s.IsLeader)
	for i, k := range pre {
		v, ok, err := storetest.Get(db, k)
		if err != nil || !ok || v != strings.Repeat("v", i) {
			t.Fatalf("%s = %q, %v, %v after restore", k, v, ok, err)
		}
	}
	st := s.Status()
	if len(st.Nodes) != 1 || st.Nodes[0].ID != "r0" || st.Term <= info.Term {
		t.Fatalf("restored cluster %+v, backup term %d", st, info.Term)
	}
	testhelp.WaitFor(t, storetest.WaitTimeout, "own raft address corrected", func() bool {
		st := s.Status()
		return len(st.Nodes) == 1 && st.Nodes[0].Raft == raftAddr
	})
	mustPut(t, s, "after-restore", "yes")
	if st := s.Status(); st.AppliedIndex <= info.Index {
		t.Fatalf("applied %d after a write, backup at %d", st.AppliedIndex, info.Index)
	}
	// The state equals the backup's plus the new write: count records.
	n := 0
	if _, err := store.ReadBackup(bytes.NewReader(file), func(_ store.BackupInfo, k, _ []byte) error {
		if strings.HasPrefix(string(k), "fsm/kv/") {
			n++
		}
		return nil
	}, nil); err != nil {
		t.Fatal(err)
	}
	var after bytes.Buffer
	if _, err := s.Backup(ctxT(t), &after, nil); err != nil {
		t.Fatal(err)
	}
	m := 0
	if _, err := store.ReadBackup(&after, func(_ store.BackupInfo, k, _ []byte) error {
		if strings.HasPrefix(string(k), "fsm/kv/") {
			m++
		}
		return nil
	}, nil); err != nil {
		t.Fatal(err)
	}
	if m != n+1 {
		t.Fatalf("restored node holds %d keys, backup %d (+1 written since)", m, n)
	}
	if _, ok := s.LastSnapshot(); !ok {
		t.Fatal("restored node reports no raft snapshot")
	}
}

func TestReadBackupRefusesDamage(t *testing.T) {
	c := storetest.MakeCluster(t, 1, kvProcessor)
	lead := c.Leader().Store
	for i := range 50 {
		mustPut(t, lead, fmt.Sprintf("k%02d", i), strings.Repeat("z", 100))
	}
	var buf bytes.Buffer
	if _, err := lead.Backup(ctxT(t), &buf, nil); err != nil {
		t.Fatal(err)
	}
	file := buf.Bytes()
	flip := func(at int) []byte {
		b := bytes.Clone(file)
		b[at] ^= 0x40
		return b
	}
	cases := []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "empty"},
		{"foreign", []byte("PK\x03\x04 a zip file, not a backup"), "not a driftline backup"},
		{"header only", file[:12], "truncated"},
		{"half", file[:len(file)/2], "truncated"},
		{"no digest", file[:len(file)-32], "truncated"},
		{"one byte short", file[:len(file)-1], "truncated"},
		{"trailing", append(bytes.Clone(file), 0), "bytes after the end"},
		{"flipped value", flip(len(file) / 2), "corrupt"},
		{"flipped digest", flip(len(file) - 1), "SHA-256 mismatch"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := store.ReadBackup(bytes.NewReader(tc.data), nil, nil)
			if !errors.Is(err, store.ErrBadBackup) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want ErrBadBackup saying %q", err, tc.want)
			}
			// Seeding from it writes no raft state.
			dir := t.TempDir()
			db, err := kv.Open("", kv.Test)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if _, err := store.Seed(store.SeedConfig{LogDB: db, Dir: dir, NodeID: "x", RaftAddr: "127.0.0.1:1"}, bytes.NewReader(tc.data)); !errors.Is(err, store.ErrBadBackup) {
				t.Fatalf("seed: %v", err)
			}
			snaps, err := raft.NewFileSnapshotStore(dir, 1, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if l, _ := snaps.List(); len(l) != 0 {
				t.Fatalf("seed from a damaged file left snapshot %+v", l[0])
			}
		})
	}
}

func TestBackupOnFollowerRefused(t *testing.T) {
	c := storetest.MakeCluster(t, 2, kvProcessor)
	f := c.Followers()[0].Store
	if _, err := f.Backup(ctxT(t), io.Discard, nil); !errors.Is(err, store.ErrNotLeader) {
		t.Fatalf("backup on follower: %v", err)
	}
}

func TestTransferLeadership(t *testing.T) {
	c := storetest.MakeCluster(t, 3, kvProcessor)
	old := c.Leader()
	target := c.Followers()[0]
	ctx := ctxT(t)
	if _, err := old.Store.TransferLeadership(ctx, "nope"); !errors.Is(err, store.ErrUnknownNode) {
		t.Fatalf("transfer to unknown node: %v", err)
	}
	if _, err := target.Store.TransferLeadership(ctx, ""); !errors.Is(err, store.ErrNotLeader) {
		t.Fatalf("transfer from a follower: %v", err)
	}
	if got, err := old.Store.TransferLeadership(ctx, target.ID); err != nil || got != target.ID {
		t.Fatalf("transfer: %q, %v", got, err)
	}
	testhelp.WaitFor(t, storetest.WaitTimeout, target.ID+" leads", target.Store.IsLeader)
}
