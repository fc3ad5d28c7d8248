package raftstore

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/hashicorp/raft"

	"github.com/driftline/driftline/shared/kv"
)

// openDB opens an on-disk database with the hub's Server profile (SyncWrites on).
func openDB(t testing.TB) *badger.DB {
	t.Helper()
	db, err := kv.Open(t.TempDir(), kv.Server)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func entries(from, to uint64) []*raft.Log {
	var out []*raft.Log
	for i := from; i <= to; i++ {
		out = append(out, &raft.Log{Index: i, Term: 3, Type: raft.LogCommand, Data: []byte{byte(i), 'x'}})
	}
	return out
}

func TestServerProfileSyncs(t *testing.T) {
	if !openDB(t).Opts().SyncWrites {
		t.Fatal("raft log database opened without SyncWrites")
	}
}

func TestEmptyLog(t *testing.T) {
	s := New(openDB(t))
	for name, f := range map[string]func() (uint64, error){"first": s.FirstIndex, "last": s.LastIndex} {
		idx, err := f()
		if err != nil || idx != 0 {
			t.Errorf("%s index of empty log = %d, %v; want 0, nil", name, idx, err)
		}
	}
}

func TestGetLogMissingIsErrLogNotFound(t *testing.T) {
	s := New(openDB(t))
	var l raft.Log
	if err := s.GetLog(7, &l); err != raft.ErrLogNotFound { //nolint:errorlint // raft compares with ==
		t.Fatalf("GetLog(missing) = %v, want raft.ErrLogNotFound itself", err)
	}
	if err := s.StoreLogs(entries(1, 3)); err != nil {
		t.Fatal(err)
	}
	if err := s.GetLog(4, &l); err != raft.ErrLogNotFound { //nolint:errorlint
		t.Fatalf("GetLog(past end) = %v, want raft.ErrLogNotFound itself", err)
	}
}

func TestStableMissingIsNotFound(t *testing.T) {
	s := New(openDB(t))
	if _, err := s.Get([]byte("CurrentTerm")); err == nil || err.Error() != "not found" {
		t.Fatalf("Get(missing) error = %v, want text exactly %q", err, "not found")
	}
	if _, err := s.GetUint64([]byte("LastVoteTerm")); err == nil || err.Error() != "not found" {
		t.Fatalf("GetUint64(missing) error = %v, want text exactly %q", err, "not found")
	}
}

func TestStable(t *testing.T) {
	s := New(openDB(t))
	cases := []struct {
		key, val []byte
	}{
		{[]byte("LastVoteCand"), []byte("node-2")},
		{[]byte("empty"), []byte{}},
		{[]byte{0, 0xff}, bytes.Repeat([]byte{7}, 5000)},
	}
	for _, c := range cases {
		if err := s.Set(c.key, c.val); err != nil {
			t.Fatal(err)
		}
		got, err := s.Get(c.key)
		if err != nil || !bytes.Equal(got, c.val) {
			t.Errorf("Get(%q) = %q, %v; want %q", c.key, got, err, c.val)
		}
	}
	if err := s.SetUint64([]byte("CurrentTerm"), 42); err != nil {
		t.Fatal(err)
	}
	if v, err := s.GetUint64([]byte("CurrentTerm")); err != nil || v != 42 {
		t.Fatalf("GetUint64 = %d, %v; want 42", v, err)
	}
	if _, err := s.GetUint64([]byte("LastVoteCand")); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("GetUint64 of a 6-byte value = %v, want ErrCorrupt", err)
	}
}

func TestStoreGetRoundTrip(t *testing.T) {
	s := New(openDB(t))
	at := time.Unix(1700000000, 123456789)
	cases := []raft.Log{
		{Index: 1, Term: 1, Type: raft.LogCommand, Data: []byte("hello")},
		{Index: 2, Term: 1, Type: raft.LogNoop},
		{Index: 3, Term: 2, Type: raft.LogConfiguration, Data: []byte{1, 2, 3}, Extensions: []byte("ext")},
		{Index: 4, Term: 9, Type: raft.LogBarrier, AppendedAt: at},
		{Index: 1 << 40, Term: 1 << 50, Type: raft.LogCommand, Data: bytes.Repeat([]byte("z"), 100000)},
	}
	for i := range cases {
		if err := s.StoreLog(&cases[i]); err != nil {
			t.Fatal(err)
		}
	}
	for _, want := range cases {
		var got raft.Log
		if err := s.GetLog(want.Index, &got); err != nil {
			t.Fatalf("GetLog(%d): %v", want.Index, err)
		}
		if got.Index != want.Index || got.Term != want.Term || got.Type != want.Type ||
			!bytes.Equal(got.Data, want.Data) || !bytes.Equal(got.Extensions, want.Extensions) ||
			!got.AppendedAt.Equal(want.AppendedAt) {
			t.Errorf("GetLog(%d) = %+v, want %+v", want.Index, got, want)
		}
	}
	if first, _ := s.FirstIndex(); first != 1 {
		t.Errorf("FirstIndex = %d, want 1", first)
	}
	if last, _ := s.LastIndex(); last != 1<<40 {
		t.Errorf("LastIndex = %d, want %d", last, uint64(1<<40))
	}
}

// TestStoreLogsAtomic checks that a batch is one transaction: a reader never sees part of it.
func TestStoreLogsAtomic(t *testing.T) {
	db := openDB(t)
	s := New(db)
	done := make(chan struct{})
	bad := make(chan uint64, 1)
	go func() {
		defer close(done)
		for range 200 {
			first, _ := s.FirstIndex()
			last, _ := s.LastIndex()
			if first != 0 && (last-first+1)%50 != 0 {
				select {
				case bad <- last - first + 1:
				default:
				}
				return
			}
		}
	}()
	for b := uint64(0); b < 20; b++ {
		if err := s.StoreLogs(entries(b*50+1, b*50+50)); err != nil {
			t.Fatal(err)
		}
	}
	<-done
	select {
	case n := <-bad:
		t.Fatalf("a reader saw %d entries, not a whole number of 50-entry batches", n)
	default:
	}
}

// TestStoreLogsTooBig stores a batch larger than one badger transaction may hold.
func TestStoreLogsTooBig(t *testing.T) {
	db := openDB(t)
	s := New(db)
	var logs []*raft.Log
	// More entries than one transaction may hold (badger bounds a transaction by count as well
	// as by size; large values go to the value log and count only as pointers).
	big := bytes.Repeat([]byte("b"), 512)
	n := int(db.MaxBatchCount()) + 10
	for i := 1; i <= n; i++ {
		logs = append(logs, &raft.Log{Index: uint64(i), Term: 1, Data: big})
	}
	// Precondition: one transaction cannot hold the batch.
	txn := db.NewTransaction(true)
	var tooBig bool
	for _, l := range logs {
		if err := txn.Set(logKey(l.Index), encodeLog(l)); errors.Is(err, badger.ErrTxnTooBig) {
			tooBig = true
			break
		}
	}
	txn.Discard()
	if !tooBig {
		t.Fatal("test batch fits one transaction; make it bigger")
	}
	if err := s.StoreLogs(logs); err != nil {
		t.Fatalf("StoreLogs of %d entries: %v", n, err)
	}
	if last, _ := s.LastIndex(); last != uint64(n) {
		t.Fatalf("LastIndex = %d, want %d", last, n)
	}
}

func TestDeleteRange(t *testing.T) {
	cases := []struct {
		name                string
		min, max            uint64
		wantFirst, wantLast uint64
	}{
		{"prefix", 1, 10, 11, 30},
		{"suffix", 21, 30, 1, 20},
		{"all", 1, 30, 0, 0},
		{"beyond both ends", 0, 1000, 0, 0},
		{"none", 40, 50, 1, 30},
		{"inverted", 10, 5, 1, 30},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := New(openDB(t))
			if err := s.StoreLogs(entries(1, 30)); err != nil {
				t.Fatal(err)
			}
			if err := s.DeleteRange(c.min, c.max); err != nil {
				t.Fatal(err)
			}
			first, _ := s.FirstIndex()
			last, _ := s.LastIndex()
			if first != c.wantFirst || last != c.wantLast {
				t.Fatalf("after DeleteRange(%d,%d): first %d last %d, want %d %d", c.min, c.max, first, last, c.wantFirst, c.wantLast)
			}
			var l raft.Log
			if c.min <= c.max && c.min >= 1 && c.min <= 30 {
				if err := s.GetLog(c.min, &l); err != raft.ErrLogNotFound { //nolint:errorlint
					t.Fatalf("GetLog(%d) after delete = %v", c.min, err)
				}
			}
		})
	}
}

// TestDeleteRangeMany deletes more keys than one scan pass collects.
func TestDeleteRangeMany(t *testing.T) {
	s := New(openDB(t))
	const n = 3*deleteChunk + 17
	if err := s.StoreLogs(entries(1, n)); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteRange(1, n-5); err != nil {
		t.Fatal(err)
	}
	if first, _ := s.FirstIndex(); first != n-4 {
		t.Fatalf("FirstIndex = %d, want %d", first, n-4)
	}
}

// TestSharedWithOtherPrefixes checks that keys of the FSM beside and around the log prefix do
// not leak into the log's first and last index.
func TestSharedWithOtherPrefixes(t *testing.T) {
	db := openDB(t)
	err := db.Update(func(txn *badger.Txn) error {
		for _, k := range []string{"fsm/x", "raft/lof", "raft/loh", "raft/stable/x", "zzz"} {
			if err := txn.Set([]byte(k), []byte("v")); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	s := New(db)
	if f, _ := s.FirstIndex(); f != 0 {
		t.Fatalf("FirstIndex with only foreign keys = %d", f)
	}
	if err := s.StoreLogs(entries(5, 9)); err != nil {
		t.Fatal(err)
	}
	f, _ := s.FirstIndex()
	l, _ := s.LastIndex()
	if f != 5 || l != 9 {
		t.Fatalf("first/last = %d/%d, want 5/9", f, l)
	}
}

func TestReopenKeepsLog(t *testing.T) {
	dir := t.TempDir()
	db, err := kv.Open(dir, kv.Server)
	if err != nil {
		t.Fatal(err)
	}
	if err := New(db).StoreLogs(entries(1, 5)); err != nil {
		t.Fatal(err)
	}
	if err := New(db).SetUint64([]byte("CurrentTerm"), 7); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db, err = kv.Open(dir, kv.Server)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	s := New(db)
	if l, _ := s.LastIndex(); l != 5 {
		t.Fatalf("LastIndex after reopen = %d", l)
	}
	if v, err := s.GetUint64([]byte("CurrentTerm")); v != 7 || err != nil {
		t.Fatalf("CurrentTerm after reopen = %d, %v", v, err)
	}
}

func TestDecodeLogErrors(t *testing.T) {
	good := encodeLog(&raft.Log{Term: 1, Data: []byte("abc")})
	cases := []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"format", append([]byte{9}, good[1:]...)},
		{"truncated", good[:len(good)-2]},
		{"trailing", append(append([]byte(nil), good...), 0)},
		{"huge length", []byte{1, 1, 0, 0xff, 0xff, 0xff, 0xff, 0x0f}},
	}
	for _, c := range cases {
		var l raft.Log
		if err := decodeLog(1, c.in, &l); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: decodeLog = %v, want ErrCorrupt", c.name, err)
		}
	}
}

func FuzzDecodeLog(f *testing.F) {
	f.Add(encodeLog(&raft.Log{Term: 1, Type: raft.LogCommand, Data: []byte("abc")}))
	f.Add(encodeLog(&raft.Log{Term: 5, Extensions: []byte("e"), AppendedAt: time.Unix(5, 0)}))
	f.Add([]byte{})
	f.Add([]byte{1, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		var l raft.Log
		if err := decodeLog(3, b, &l); err != nil {
			return
		}
		again := encodeLog(&l)
		var l2 raft.Log
		if err := decodeLog(3, again, &l2); err != nil {
			t.Fatalf("re-encoded entry does not decode: %v", err)
		}
		if l2.Term != l.Term || l2.Type != l.Type || !bytes.Equal(l2.Data, l.Data) || !bytes.Equal(l2.Extensions, l.Extensions) {
			t.Fatalf("round trip changed the entry: %+v vs %+v", l, l2)
		}
	})
}
