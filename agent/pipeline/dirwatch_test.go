package pipeline

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/driftline/driftline/agent/devicedb"
	"github.com/driftline/driftline/shared/contract"
	"github.com/driftline/driftline/shared/wire"
)

// listDir returns the file names under dir (recursively, relative), sorted.
func listDir(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, e os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !e.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

func writeOld(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Minute)
	if err := os.Chtimes(path, old, old); err != nil {
		t.Fatal(err)
	}
}

func newWatcher(t *testing.T, h *harness, dir string, ns devicedb.Namespace) *DirWatcher {
	t.Helper()
	w, err := NewDirWatcher(h.p, DirOptions{Dir: dir, State: ns, Logger: h.p.log})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func stateNS(t *testing.T) devicedb.Namespace {
	t.Helper()
	db, err := devicedb.OpenInMemory()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db.Root().Sub("files")
}

func TestDirWatcherMovesFiles(t *testing.T) {
	s := mustSchema(t, testContract)
	h := newHarness(t, Options{Contract: s, Window: contract.Window{Rows: 1000, Seconds: 60}})
	dir := t.TempDir()
	writeOld(t, filepath.Join(dir, "a.csv"), "id,temp,mode\n1,20,auto\n2,30,manual\n")
	writeOld(t, filepath.Join(dir, "b.jsonl"), jsonRows(10, 3, constant(21)))
	writeOld(t, filepath.Join(dir, "c.csv"), "\"broken header\n")
	writeOld(t, filepath.Join(dir, "notes.txt"), "not data")
	// A file written just now may still be growing: it waits.
	if err := os.WriteFile(filepath.Join(dir, "fresh.csv"), []byte("id,temp,mode\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// done/a.csv exists already: the new one gets another name.
	if err := os.MkdirAll(filepath.Join(dir, DoneDir), 0o755); err != nil {
		t.Fatal(err)
	}
	writeOld(t, filepath.Join(dir, DoneDir, "a.csv"), "old")
	w := newWatcher(t, h, dir, stateNS(t))
	if err := w.Scan(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := []string{"done/a-1.csv", "done/a.csv", "done/b.jsonl", "failed/c.csv", "failed/c.csv.error", "fresh.csv", "notes.txt"}
	if got := listDir(t, dir); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("files %v\nwant %v", got, want)
	}
	note, err := os.ReadFile(filepath.Join(dir, FailedDir, "c.csv.error"))
	if err != nil || !strings.Contains(string(note), "header") {
		t.Fatalf("failure note %q, %v", note, err)
	}
	h.p.Flush()
	vs := h.rec.validations(t)
	if len(vs) != 1 || vs[0].Rows != 5 || vs[0].Invalid != 0 {
		t.Fatalf("validation %+v", vs)
	}
}

func TestDirWatcherResumesWithoutDoubleProcessing(t *testing.T) {
	s := mustSchema(t, testContract)
	ns := stateNS(t)
	dir := t.TempDir()
	const total = 3000
	writeOld(t, filepath.Join(dir, "big.jsonl"), jsonRows(0, total, constant(20)))

	// First run: stopped (ctx cancelled) when the first window of 100 rows is reported.
	h := newHarness(t, Options{Contract: s, Window: contract.Window{Rows: 100, Seconds: 3600}})
	ctx, cancel := context.WithCancel(context.Background())
	h.rec.onReport = func(k wire.Kind) {
		if k == wire.KindValidation {
			cancel()
		}
	}
	if err := newWatcher(t, h, dir, ns).Scan(ctx); err == nil {
		t.Fatal("scan did not stop")
	}
	first := 0
	for _, v := range h.rec.validations(t) {
		first += int(v.Rows)
	}
	var pr progress
	if b, err := ns.Get([]byte("big.jsonl")); err != nil {
		t.Fatal(err)
	} else if pr, err = decodeProgress(b); err != nil {
		t.Fatal(err)
	}
	if pr.Rows != 100 || pr.Done || first != 100 {
		t.Fatalf("after stop: progress %+v, %d rows reported", pr, first)
	}

	// Restart: a new pipeline and watcher on the same state read the rest once.
	h2 := newHarness(t, Options{Contract: s, Window: contract.Window{Rows: 100, Seconds: 3600}})
	if err := newWatcher(t, h2, dir, ns).Scan(context.Background()); err != nil {
		t.Fatal(err)
	}
	h2.p.Flush()
	second := 0
	for _, v := range h2.rec.validations(t) {
		second += int(v.Rows)
		if v.Invalid != 0 {
			t.Fatalf("rows re-read: %+v", v) // a repeated id would break "unique"
		}
	}
	if first+second != total {
		t.Fatalf("%d + %d rows processed, want %d", first, second, total)
	}
	if got := listDir(t, dir); strings.Join(got, " ") != "done/big.jsonl" {
		t.Fatalf("files %v", got)
	}
	if _, err := ns.Get([]byte("big.jsonl")); err == nil {
		t.Fatal("progress record left behind")
	}
}

func TestDirWatcherFinishesDoneRecord(t *testing.T) {
	s := mustSchema(t, testContract)
	ns := stateNS(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "x.csv")
	writeOld(t, path, "id,temp,mode\n1,20,auto\n")
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	// A crash after the last row but before the move: the record says done.
	b, _ := json.Marshal(progress{Size: info.Size(), MTime: info.ModTime().UnixNano(), Rows: 1, Done: true})
	if err := ns.Set([]byte("x.csv"), b); err != nil {
		t.Fatal(err)
	}
	// A record of a file that is gone is forgotten.
	if err := ns.Set([]byte("gone.csv"), b); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, Options{Contract: s})
	if err := newWatcher(t, h, dir, ns).Scan(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.p.Flush()
	if n := len(h.rec.validations(t)); n != 0 {
		t.Fatalf("file read again: %d reports", n)
	}
	if got := listDir(t, dir); strings.Join(got, " ") != "done/x.csv" {
		t.Fatalf("files %v", got)
	}
	if err := ns.IterateKeys(false, func(k []byte, _ int64) error {
		t.Errorf("record %q left", k)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// FuzzDirFile: any file content ends in done/ or failed/ (never a panic, never left behind),
// and a done file's rows are all counted.
func FuzzDirFile(f *testing.F) {
	f.Add(true, []byte("id,temp,mode\n1,20,auto\n2,x,manual\n"))
	f.Add(true, []byte("\"a\nb"))
	f.Add(false, []byte(`{"id":1,"temp":3}`+"\n{oops\n"))
	f.Add(false, []byte{0xff, 0xfe, '\n'})
	s := mustSchema(f, testContract)
	h := newHarness(f, Options{Contract: s, Window: contract.Window{Rows: 64, Seconds: 60}})
	db, err := devicedb.OpenInMemory()
	if err != nil {
		f.Fatal(err)
	}
	defer db.Close()
	ns := db.Root().Sub("files")
	f.Fuzz(func(t *testing.T, csv bool, content []byte) {
		dir := t.TempDir()
		name := "in.jsonl"
		if csv {
			name = "in.csv"
		}
		writeOld(t, filepath.Join(dir, name), string(content))
		w, err := NewDirWatcher(h.p, DirOptions{Dir: dir, State: ns, Logger: h.p.log})
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Scan(context.Background()); err != nil {
			t.Fatal(err)
		}
		got := listDir(t, dir)
		if len(got) == 0 || !(got[0] == "done/"+name || got[0] == "failed/"+name) {
			t.Fatalf("files %v", got)
		}
	})
}
