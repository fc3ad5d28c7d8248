package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/dgraph-io/badger/v4"
	"github.com/hashicorp/raft"

	"github.com/driftline/driftline/hub/command"
	"github.com/driftline/driftline/shared/kv"
)

// kvProc is a small real processor: payload {"k","v"} sets fsm/t/k; {"k","v","create":true}
// fails with errExists when the key exists; {"k","fill":N,"size":S} writes N keys of S bytes.
type kvProc struct{ calls int }

var errExists = errors.New("exists")

type kvOp struct {
	K      string `json:"k"`
	V      string `json:"v"`
	Create bool   `json:"create,omitempty"`
	Fill   int    `json:"fill,omitempty"`
	Size   int    `json:"size,omitempty"`
}

// typeUnhandled is a type command knows that kvProc does not handle (as a processor of a build
// that forgot one would).
const typeUnhandled = command.TypeOpenLineage

func (p *kvProc) Apply(txn *badger.Txn, index uint64, env command.Envelope) (any, error) {
	p.calls++
	if env.Type == typeUnhandled {
		return nil, fmt.Errorf("%w %d: not handled", command.ErrUnknownType, env.Type)
	}
	var op kvOp
	if err := env.DecodePayload(&op); err != nil {
		return nil, err
	}
	k := []byte("fsm/t/" + op.K)
	if op.Fill > 0 {
		for i := range op.Fill {
			if err := txn.Set(append(k, fmt.Sprintf("/%05d", i)...), bytes.Repeat([]byte("x"), op.Size)); err != nil {
				return nil, err
			}
		}
		return index, nil
	}
	if op.Create {
		if _, err := txn.Get(k); err == nil {
			return nil, errExists
		}
	}
	return op.V, txn.Set(k, []byte(op.V))
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func memDB(t testing.TB) *badger.DB {
	t.Helper()
	db, err := kv.Open("", kv.Test)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func newApplier(t testing.TB, db *badger.DB, p Processor) *applier {
	t.Helper()
	a := &applier{db: db, proc: p, log: quiet()}
	if err := a.loadApplied(); err != nil {
		t.Fatal(err)
	}
	return a
}

func enc(t testing.TB, typ command.Type, body any) []byte {
	t.Helper()
	env, err := command.New(typ, "", 1, "t", body)
	if err != nil {
		t.Fatal(err)
	}
	b, err := command.Encode(env)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func batch(t testing.TB, entries ...[]byte) []byte {
	return enc(t, command.TypeBatch, command.Batch{Entries: entries})
}

func put(t testing.TB, k, v string) []byte { return enc(t, command.TypeTagSet, kvOp{K: k, V: v}) }

func logs(from uint64, data ...[]byte) []*raft.Log {
	var out []*raft.Log
	for i, d := range data {
		out = append(out, &raft.Log{Index: from + uint64(i), Term: 1, Type: raft.LogCommand, Data: d})
	}
	return out
}

func get(t testing.TB, db *badger.DB, key string) (string, bool) {
	t.Helper()
	var v []byte
	err := db.View(func(txn *badger.Txn) error {
		item, err := txn.Get([]byte(key))
		if err != nil {
			return err
		}
		v, err = item.ValueCopy(nil)
		return err
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return "", false
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(v), true
}

func TestApplyResults(t *testing.T) {
	db := memDB(t)
	a := newApplier(t, db, &kvProc{})
	skippable := []byte{command.Version, 0x80, 0x7f, '{', '}'}
	in := logs(1,
		put(t, "a", "1"),
		batch(t, put(t, "b", "2"), enc(t, command.TypeTagSet, kvOp{K: "a", V: "x", Create: true}), []byte{9}, skippable, put(t, "c", "3")),
		[]byte{command.Version, 0, 3, '{', 'x'}, // a known type, undecodable JSON: a buggy proposer
		skippable,
		enc(t, command.TypeNodeSet, command.NodeSet{ID: "n1", Raft: "r:1", HTTP: "h:1"}),
		batch(t, batch(t, put(t, "z", "z"))),
		enc(t, command.TypeBatch, "not a batch"),
	)
	in = append(in, &raft.Log{Index: 8, Type: raft.LogConfiguration, Data: []byte("conf")})
	out := a.applyLogs(in)
	if len(out) != len(in) {
		t.Fatalf("%d responses for %d logs", len(out), len(in))
	}
	if r, ok := out[0].(*result); !ok || r.err != nil || r.val != "1" {
		t.Errorf("lone put: %#v", out[0])
	}
	rs, ok := out[1].([]result)
	if !ok || len(rs) != 5 {
		t.Fatalf("batch response: %#v", out[1])
	}
	if rs[0].val != "2" || rs[0].err != nil || rs[4].val != "3" {
		t.Errorf("batch puts: %+v", rs)
	}
	if !errors.Is(rs[1].err, errExists) {
		t.Errorf("conflicting create in batch: %v, want errExists", rs[1].err)
	}
	if !errors.Is(rs[2].err, ErrBadCommand) {
		t.Errorf("undecodable batched entry: %v, want ErrBadCommand", rs[2].err)
	}
	if rs[3] != (result{}) {
		t.Errorf("skippable batched entry: %+v, want empty", rs[3])
	}
	if r, ok := out[2].(*result); !ok || !errors.Is(r.err, ErrBadCommand) {
		t.Errorf("corrupt entry: %#v, want ErrBadCommand", out[2])
	}
	if out[3] != nil {
		t.Errorf("skippable entry: %#v, want nil", out[3])
	}
	if r, ok := out[4].(*result); !ok || r.err != nil {
		t.Errorf("node set: %#v", out[4])
	}
	if rs, ok := out[5].([]result); !ok || !errors.Is(rs[0].err, ErrBadCommand) {
		t.Errorf("nested batch: %#v, want ErrBadCommand", out[5])
	}
	if r, ok := out[6].(*result); !ok || !errors.Is(r.err, ErrBadCommand) {
		t.Errorf("bad batch payload: %#v, want ErrBadCommand", out[6])
	}
	for k, want := range map[string]string{"fsm/t/a": "1", "fsm/t/b": "2", "fsm/t/c": "3"} {
		if got, _ := get(t, db, k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	if _, ok := get(t, db, "fsm/t/z"); ok {
		t.Error("nested batch was applied")
	}
	var n command.NodeSet
	v, _ := get(t, db, "fsm/nodes/n1")
	if err := json.Unmarshal([]byte(v), &n); err != nil || n.HTTP != "h:1" {
		t.Errorf("node record = %q, %v", v, err)
	}
	if a.applied.Load() != 8 {
		t.Errorf("applied = %d, want 8", a.applied.Load())
	}
	out = a.applyLogs(logs(9, enc(t, command.TypeNodeRemove, command.NodeRemove{ID: "n1"})))
	if _, ok := get(t, db, "fsm/nodes/n1"); ok {
		t.Errorf("node record survives remove: %#v", out[0])
	}
}

// TestReplaySkipsApplied reopens the applier on the same database, as a restart does, and
// replays entries: nothing at or below the stored position is applied again.
func TestReplaySkipsApplied(t *testing.T) {
	db := memDB(t)
	p := &kvProc{}
	in := logs(1, put(t, "a", "1"), batch(t, put(t, "b", "1"), put(t, "c", "1")), put(t, "d", "1"))
	newApplier(t, db, p).applyLogs(in)
	if p.calls != 4 {
		t.Fatalf("first apply: %d processor calls, want 4", p.calls)
	}
	p.calls = 0
	a := newApplier(t, db, p)
	a.applyLogs(append(in, logs(4, put(t, "e", "1"))...))
	if p.calls != 1 {
		t.Fatalf("replay: %d processor calls, want 1 (only the new entry)", p.calls)
	}
}

// TestReplayInsideBatch stores a position inside a TypeBatch entry (what an early commit on
// ErrTxnTooBig leaves) and checks that replay applies only the rest of that entry.
func TestReplayInsideBatch(t *testing.T) {
	db := memDB(t)
	err := db.Update(func(txn *badger.Txn) error {
		return txn.Set(appliedKey, position{index: 5, next: 2}.encode())
	})
	if err != nil {
		t.Fatal(err)
	}
	p := &kvProc{}
	a := newApplier(t, db, p)
	in := logs(4, put(t, "old", "1"), batch(t, put(t, "b0", "1"), put(t, "b1", "1"), put(t, "b2", "1"), put(t, "b3", "1")))
	a.applyLogs(in)
	for k, want := range map[string]bool{"old": false, "b0": false, "b1": false, "b2": true, "b3": true} {
		if _, ok := get(t, db, "fsm/t/"+k); ok != want {
			t.Errorf("%s present = %v, want %v", k, ok, want)
		}
	}
	if a.pos != (position{5, entryDone}) {
		t.Errorf("position = %+v, want {5 done}", a.pos)
	}
}

// TestTooBigCommitsEarly applies a batch whose writes do not fit one badger transaction.
func TestTooBigCommitsEarly(t *testing.T) {
	db := memDB(t)
	p := &kvProc{}
	a := newApplier(t, db, p)
	// Each fill is ~40% of the largest transaction: three of them cannot share one.
	size := 4096
	n := int(db.MaxBatchSize()*4/10) / size
	fill := func(k string, count int) []byte {
		return enc(t, command.TypeTagSet, kvOp{K: k, Fill: count, Size: size})
	}
	in := logs(1, batch(t, fill("f0", n), fill("f1", n), fill("huge", 3*n), fill("f2", n)), put(t, "after", "1"))
	out := a.applyLogs(in)
	rs := out[0].([]result)
	for i, want := range []error{nil, nil, ErrCommandTooBig, nil} {
		if !errors.Is(rs[i].err, want) || (want == nil && rs[i].val != uint64(1)) {
			t.Errorf("result %d = %+v, want err %v", i, rs[i], want)
		}
	}
	for _, k := range []string{"f0", "f1", "f2"} {
		if _, ok := get(t, db, fmt.Sprintf("fsm/t/%s/%05d", k, n-1)); !ok {
			t.Errorf("fill %s not applied", k)
		}
	}
	if _, ok := get(t, db, "fsm/t/huge/00000"); ok {
		t.Error("part of the oversized command was written")
	}
	if v, _ := get(t, db, "fsm/t/after"); v != "1" {
		t.Error("entry after the big batch not applied")
	}
	p.calls = 0
	newApplier(t, db, p).applyLogs(in)
	if p.calls != 0 {
		t.Fatalf("replay after early commits: %d processor calls, want 0", p.calls)
	}
}

// sink is a raft.SnapshotSink over a buffer.
type sink struct {
	bytes.Buffer
	cancelled bool
}

func (s *sink) ID() string    { return "test" }
func (s *sink) Cancel() error { s.cancelled = true; return nil }
func (s *sink) Close() error  { return nil }

func dump(t testing.TB, db *badger.DB, prefix string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(prefix)})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			out[string(it.Item().Key())] = string(v)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestSnapshotRestoreRoundTrip(t *testing.T) {
	src := memDB(t)
	a := newApplier(t, src, &kvProc{})
	f := &fsm{db: src, ap: a, log: quiet()}
	var entries [][]byte
	for i := range 300 {
		entries = append(entries, put(t, fmt.Sprintf("k%03d", i), strings.Repeat("v", i)))
	}
	entries = append(entries, put(t, "empty", ""))
	a.applyLogs(logs(1, entries...))
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	// Applies after Snapshot are not in it.
	a.applyLogs(logs(uint64(len(entries)+1), put(t, "later", "x")))
	var s sink
	if err := snap.Persist(&s); err != nil {
		t.Fatal(err)
	}
	snap.Release()
	want := dump(t, src, "fsm/")
	delete(want, "fsm/t/later")
	want["fsm/meta/applied"] = string(position{uint64(len(entries)), entryDone}.encode())

	dst := memDB(t)
	err = dst.Update(func(txn *badger.Txn) error {
		for _, k := range []string{"fsm/t/stale", "fsm/nodes/gone", "raft/log/keep", "other/keep"} {
			if err := txn.Set([]byte(k), []byte("old")); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	b := newApplier(t, dst, &kvProc{})
	g := &fsm{db: dst, ap: b, log: quiet()}
	if err := g.Restore(io.NopCloser(bytes.NewReader(s.Bytes()))); err != nil {
		t.Fatal(err)
	}
	got := dump(t, dst, "fsm/")
	if len(got) != len(want) {
		t.Fatalf("restored %d keys, want %d", len(got), len(want))
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("restored %s = %q, want %q", k, got[k], v)
		}
	}
	for _, k := range []string{"raft/log/keep", "other/keep"} {
		if _, ok := get(t, dst, k); !ok {
			t.Errorf("restore deleted %s outside the FSM prefix", k)
		}
	}
	if b.pos.index != uint64(len(entries)) {
		t.Errorf("position after restore = %+v", b.pos)
	}
}

func snapshotOf(t testing.TB, kvs map[string]string) []byte {
	t.Helper()
	db := memDB(t)
	err := db.Update(func(txn *badger.Txn) error {
		for k, v := range kvs {
			if err := txn.Set([]byte(k), []byte(v)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	txn := db.NewTransaction(false)
	defer txn.Discard()
	if err := writeSnapshot(txn, &buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestReadSnapshotErrors(t *testing.T) {
	good := snapshotOf(t, map[string]string{"fsm/a": "1", "fsm/b": "22"})
	flip := append([]byte(nil), good...)
	flip[len(snapMagic)+3] ^= 1
	outside := append(append([]byte(nil), snapMagic...), 3, 'a', 'b', 'c', 0, 0)
	cases := []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"bad magic", append([]byte("XXSNAP1\n"), good[len(snapMagic):]...)},
		{"truncated", good[:len(good)-6]},
		{"no checksum", good[:len(good)-4]},
		{"bad checksum", flip},
		{"trailing", append(append([]byte(nil), good...), 0)},
		{"key outside prefix", outside},
		{"huge key", append(append([]byte(nil), snapMagic...), 0xff, 0xff, 0x7f)},
		{"huge value", append(append([]byte(nil), snapMagic...), 4, 'f', 's', 'm', '/', 0xff, 0xff, 0xff, 0xff, 0x7f)},
		{"varint overflow", append(append([]byte(nil), snapMagic...), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f)},
	}
	for _, c := range cases {
		err := readSnapshot(bytes.NewReader(c.in), func(k, v []byte) error { return nil })
		if !errors.Is(err, ErrCorruptSnapshot) {
			t.Errorf("%s: %v, want ErrCorruptSnapshot", c.name, err)
		}
	}
	n := 0
	if err := readSnapshot(bytes.NewReader(good), func(k, v []byte) error { n++; return nil }); err != nil || n != 2 {
		t.Fatalf("good snapshot: %d records, %v", n, err)
	}
}

func FuzzReadSnapshot(f *testing.F) {
	f.Add(snapshotOf(f, map[string]string{"fsm/a": "1", "fsm/nodes/x": `{"id":"x"}`}))
	f.Add(snapshotOf(f, nil))
	f.Add([]byte("DLSNAP1\n\x04fsm/"))
	f.Fuzz(func(t *testing.T, b []byte) {
		_ = readSnapshot(bytes.NewReader(b), func(k, v []byte) error {
			if !bytes.HasPrefix(k, FSMPrefix) {
				t.Fatalf("record outside the FSM prefix: %q", k)
			}
			return nil
		})
	})
}

// FuzzApply feeds arbitrary bytes through command.Decode and the FSM: it must never panic, and
// an entry either applies or yields an error result.
func FuzzApply(f *testing.F) {
	f.Add(put(f, "a", "1"))
	f.Add(batch(f, put(f, "b", "2"), []byte{1, 0}))
	f.Add(enc(f, command.TypeNodeSet, command.NodeSet{ID: "n"}))
	f.Add(enc(f, command.TypeNodeRemove, command.NodeRemove{}))
	f.Add([]byte{1, 0x80, 0x10})
	f.Add([]byte{})
	db := memDB(f)
	a := newApplier(f, db, &kvProc{})
	a.onHalt = func(error) {}
	var index uint64
	f.Fuzz(func(t *testing.T, b []byte) {
		index++
		out := a.applyLogs(logs(index, b))
		if len(out) != 1 {
			t.Fatalf("%d responses for one entry", len(out))
		}
		a.halted = nil // an unknown type halts; the next input starts afresh
	})
}

// TestUnknownTypeHalts: a committed command of a type this build does not know (not marked
// ignore-if-unknown), or that the processor does not handle, stops the FSM at that command:
// what came before it is applied, nothing after it, on this and every later batch and after a
// restart (the replay stops at the same place). A corrupt entry stays a per-entry error.
func TestUnknownTypeHalts(t *testing.T) {
	unknown := []byte{command.Version, 0x01, 0x23, '{', '}'} // type 0x0123, no ignore bit
	for _, tc := range []struct {
		name  string
		entry []byte
		want  string
	}{
		{"unknown type", unknown, "raft index 2 (position 1)"},
		{"unhandled type", enc(t, typeUnhandled, kvOp{K: "x", V: "y"}), "raft index 2 (position 1)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := memDB(t)
			a := newApplier(t, db, &kvProc{})
			var halts []error
			a.onHalt = func(err error) { halts = append(halts, err) }
			a.applyLogs(logs(1, put(t, "a", "1"), batch(t, put(t, "b", "2"), tc.entry, put(t, "c", "3")), put(t, "d", "4")))
			if len(halts) != 1 || !strings.Contains(halts[0].Error(), tc.want) || !errors.Is(halts[0], command.ErrUnknownType) {
				t.Fatalf("halts %v, want one naming %q", halts, tc.want)
			}
			for k, want := range map[string]bool{"a": true, "b": true, "c": false, "d": false} {
				if _, ok := get(t, db, "fsm/t/"+k); ok != want {
					t.Errorf("%s applied: %v, want %v", k, ok, want)
				}
			}
			a.applyLogs(logs(4, put(t, "e", "5")))
			if _, ok := get(t, db, "fsm/t/e"); ok || len(halts) != 2 {
				t.Fatalf("applied after the halt (halts %d)", len(halts))
			}
			// A restart replays the entry and stops at the same command.
			b := newApplier(t, db, &kvProc{})
			var again []error
			b.onHalt = func(err error) { again = append(again, err) }
			b.applyLogs(logs(2, batch(t, put(t, "b", "2"), tc.entry, put(t, "c", "3")), put(t, "d", "4")))
			if len(again) != 1 || !strings.Contains(again[0].Error(), tc.want) {
				t.Fatalf("replay halts %v", again)
			}
			if _, ok := get(t, db, "fsm/t/c"); ok {
				t.Fatal("the replay went past the unknown command")
			}
		})
	}
	t.Run("default panics", func(t *testing.T) {
		a := newApplier(t, memDB(t), &kvProc{})
		defer func() {
			if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), "cannot be applied by this build") {
				t.Fatalf("recovered %v, want the halt message", r)
			}
		}()
		a.applyLogs(logs(1, unknown))
	})
}

// TestRestoreKeepsStateOnCorruptSnapshot: a snapshot that turns out corrupt at its end (bad
// checksum, truncated) leaves the old state whole: it is checked before anything is dropped.
func TestRestoreKeepsStateOnCorruptSnapshot(t *testing.T) {
	good := snapshotOf(t, map[string]string{"fsm/a": "1", "fsm/b": "22"})
	flip := append([]byte(nil), good...)
	flip[len(flip)-1] ^= 1
	for name, in := range map[string][]byte{"bad checksum": flip, "truncated": good[:len(good)-3]} {
		t.Run(name, func(t *testing.T) {
			dst := memDB(t)
			if err := dst.Update(func(txn *badger.Txn) error { return txn.Set([]byte("fsm/t/old"), []byte("kept")) }); err != nil {
				t.Fatal(err)
			}
			g := &fsm{db: dst, ap: newApplier(t, dst, &kvProc{}), log: quiet(), dir: t.TempDir()}
			if err := g.Restore(io.NopCloser(bytes.NewReader(in))); !errors.Is(err, ErrCorruptSnapshot) {
				t.Fatalf("Restore: %v, want ErrCorruptSnapshot", err)
			}
			if got := dump(t, dst, "fsm/"); len(got) != 1 || got["fsm/t/old"] != "kept" {
				t.Fatalf("state after a corrupt snapshot: %v", got)
			}
		})
	}
}

// changeKV is kvProc as a ChangeProcessor: it emits the key of every command it applies.
type changeKV struct{ *kvProc }

func (p changeKV) ApplyChanges(txn *badger.Txn, index uint64, env command.Envelope, emit func(any)) (any, error) {
	var op kvOp
	if err := env.DecodePayload(&op); err == nil {
		emit(op.K) // emitted before the writes: a command that then fails must not deliver it
	}
	return p.kvProc.Apply(txn, index, env)
}

// TestFeedDropsChangesOfDiscardedWork: the changes of a transaction badger refused as too big
// (applied again in a smaller one), of a command too big for any, and of a command that failed
// are not delivered; every other change is, once, in order.
func TestFeedDropsChangesOfDiscardedWork(t *testing.T) {
	db := memDB(t)
	a := newApplier(t, db, changeKV{&kvProc{}})
	a.feed = NewFeed()
	sub := a.feed.Subscribe()
	size := 4096
	n := int(db.MaxBatchSize()*4/10) / size
	fill := func(k string, count int) []byte {
		return enc(t, command.TypeTagSet, kvOp{K: k, Fill: count, Size: size})
	}
	dup := enc(t, command.TypeTagSet, kvOp{K: "after", V: "2", Create: true}) // exists: fails
	a.applyLogs(logs(1, batch(t, fill("f0", n), fill("f1", n), fill("huge", 3*n), fill("f2", n)), put(t, "after", "1"), dup))
	cs, err := sub.Take()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range cs[1:] { // after the subscription's reset
		got = append(got, fmt.Sprintf("%d %v", c.Index, c.Event))
	}
	if want := []string{"1 f0", "1 f1", "1 f2", "2 after"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("delivered %v, want %v", got, want)
	}
}
