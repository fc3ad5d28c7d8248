package quarantine

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/driftline/driftline/agent/devicedb"
	"github.com/driftline/driftline/shared/contract"
)

func entry(row int64, value string) Entry {
	return FromViolations(time.Unix(1700000000, 0), "test", row,
		[]contract.Violation{{Row: row, Field: "temp", Rule: "maximum", Value: value}})
}

func rowsOf(t *testing.T, s *Store) []int64 {
	t.Helper()
	var out []int64
	skipped, err := s.Iterate(func(e Entry) error {
		out = append(out, e.Row)
		return nil
	})
	if err != nil || skipped != 0 {
		t.Fatalf("iterate: skipped %d, %v", skipped, err)
	}
	return out
}

func TestBoundsEvictOldestFirst(t *testing.T) {
	cases := []struct {
		name        string
		opts        Options
		adds        [][]int64 // batches of row numbers
		wantRows    []int64
		wantEvicted uint64
	}{
		{"under bounds", Options{MaxRows: 10}, [][]int64{{1, 2}, {3}}, []int64{1, 2, 3}, 0},
		{"rows bound across batches", Options{MaxRows: 3}, [][]int64{{1, 2}, {3, 4}, {5}}, []int64{3, 4, 5}, 2},
		{"batch larger than the bound", Options{MaxRows: 2}, [][]int64{{1}, {2, 3, 4, 5}}, []int64{4, 5}, 3},
		{"bytes bound", Options{MaxRows: 100, MaxBytes: 400}, [][]int64{{1, 2, 3, 4, 5}}, nil, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			db, err := devicedb.OpenInMemory()
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			evictions := 0
			tc.opts.OnEvict = func(n int) { evictions += n }
			s, err := Open(db.Root().Sub("q"), tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			for _, batch := range tc.adds {
				var es []Entry
				for _, r := range batch {
					es = append(es, entry(r, "v"))
				}
				if err := s.Add(es...); err != nil {
					t.Fatal(err)
				}
			}
			st := s.Stats()
			if tc.opts.MaxBytes > 0 {
				// Each entry is ~150 bytes: a 400-byte bound holds the newest two.
				if st.Bytes > tc.opts.MaxBytes || st.Rows < 1 || uint64(st.Rows)+st.Evicted != 5 {
					t.Fatalf("stats %+v", st)
				}
				got := rowsOf(t, s)
				if got[len(got)-1] != 5 {
					t.Fatalf("newest entry not kept: %v", got)
				}
				return
			}
			if got := rowsOf(t, s); fmt.Sprint(got) != fmt.Sprint(tc.wantRows) {
				t.Fatalf("rows %v, want %v", got, tc.wantRows)
			}
			if st.Evicted != tc.wantEvicted || uint64(evictions) != tc.wantEvicted || st.Rows != len(tc.wantRows) {
				t.Fatalf("stats %+v, OnEvict total %d, want %d evicted", st, evictions, tc.wantEvicted)
			}
		})
	}
}

func TestReopenKeepsEntriesAndEvictionCount(t *testing.T) {
	dir := t.TempDir()
	db, err := devicedb.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(db.Root().Sub("q"), Options{MaxRows: 2})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Add(entry(1, "a"), entry(2, "b"), entry(3, "c")); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db, err = devicedb.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	s, err = Open(db.Root().Sub("q"), Options{MaxRows: 2})
	if err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Rows != 2 || st.Evicted != 1 {
		t.Fatalf("after reopen: %+v", st)
	}
	if err := s.Add(entry(4, "d")); err != nil {
		t.Fatal(err)
	}
	var seqs []uint64
	if _, err := s.Iterate(func(e Entry) error { seqs = append(seqs, e.Seq); return nil }); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(seqs) != "[3 4]" || s.Stats().Evicted != 2 {
		t.Fatalf("seqs %v, stats %+v", seqs, s.Stats())
	}
}

func TestLargeEntryIsTruncated(t *testing.T) {
	db, err := devicedb.OpenInMemory()
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	s, err := Open(db.Root(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	var vs []contract.Violation
	for i := range 200 {
		vs = append(vs, contract.Violation{Row: 1, Field: fmt.Sprintf("f%d", i), Rule: "type", Value: strings.Repeat("x", 250)})
	}
	if err := s.Add(FromViolations(time.Now(), "mqtt", 1, vs)); err != nil {
		t.Fatal(err)
	}
	var got Entry
	if _, err := s.Iterate(func(e Entry) error { got = e; return ErrStop }); err != nil {
		t.Fatal(err)
	}
	if got.Truncated == 0 || len(got.Violations)+got.Truncated != 200 || s.Stats().Bytes > MaxEntryBytes {
		t.Fatalf("kept %d violations, truncated %d, %d bytes", len(got.Violations), got.Truncated, s.Stats().Bytes)
	}
}

func TestCorruptEntryIsSkipped(t *testing.T) {
	db, err := devicedb.OpenInMemory()
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ns := db.Root().Sub("q")
	s, err := Open(ns, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Add(entry(1, "a"), entry(2, "b")); err != nil {
		t.Fatal(err)
	}
	if err := ns.Sub("rows").Set(seqKey(1), []byte("{not json")); err != nil {
		t.Fatal(err)
	}
	var rows []int64
	skipped, err := s.Iterate(func(e Entry) error { rows = append(rows, e.Row); return nil })
	if err != nil || skipped != 1 || fmt.Sprint(rows) != "[2]" {
		t.Fatalf("rows %v skipped %d err %v", rows, skipped, err)
	}
	if _, err := decode(1, []byte("{not json")); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("decode: %v", err)
	}
	if _, err := Open(ns, Options{MaxRows: -1}); !errors.Is(err, ErrBadOptions) {
		t.Fatalf("negative bound: %v", err)
	}
}

// FuzzDecode: stored bytes are decoded without panicking; what decodes re-encodes and decodes
// to the same entry.
func FuzzDecode(f *testing.F) {
	b, _ := encode(Entry{Seq: 7, Time: time.Unix(1, 0).UTC(), Source: "mqtt", Row: 3, Violations: []Violation{{Field: "a", Rule: "type", Value: "x"}}})
	f.Add(uint64(7), b)
	f.Add(uint64(1), []byte(`{"seq":1}`))
	f.Add(uint64(1), []byte(`{"seq":1,"violations":null,"time":"bad"}`))
	f.Fuzz(func(t *testing.T, seq uint64, b []byte) {
		e, err := decode(seq, b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		b2, err := encode(e)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := decode(seq, b2); err != nil && len(b2) <= MaxEntryBytes {
			t.Fatalf("re-decode: %v", err)
		}
	})
}

// TestMaxAgeExpiresOldestFirst: entries older than MaxAge expire on Expire and on Add, oldest
// first, counted apart from evictions for space; after a reopen (times not in memory) the
// count survives and expiry reads the head entries' times.
func TestMaxAgeExpiresOldestFirst(t *testing.T) {
	db, err := devicedb.OpenInMemory()
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	t0 := time.Unix(1700000000, 0)
	now := t0
	opts := Options{MaxAge: 90 * time.Minute, Now: func() time.Time { return now }}
	s, err := Open(db.Root().Sub("q"), opts)
	if err != nil {
		t.Fatal(err)
	}
	at := func(row int64, d time.Duration) Entry {
		e := entry(row, "x")
		e.Time = t0.Add(d)
		return e
	}
	if err := s.Add(at(1, 0), at(2, time.Hour), at(3, 2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Expire(t0.Add(2 * time.Hour)); err != nil || n != 1 {
		t.Fatalf("Expire = %d, %v; want 1 (row 1 is 2 h old)", n, err)
	}
	if got := rowsOf(t, s); fmt.Sprint(got) != "[2 3]" {
		t.Fatalf("rows %v after expiry", got)
	}
	before := s.Stats()

	s, err = Open(db.Root().Sub("q"), opts)
	if err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Expired != 1 || st.Rows != 2 || st.Bytes != before.Bytes {
		t.Fatalf("after reopen %+v, before %+v", st, before)
	}
	now = t0.Add(3 * time.Hour) // Add expires first: row 2 is 2 h old now
	if err := s.Add(at(4, 3*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if got := rowsOf(t, s); fmt.Sprint(got) != "[3 4]" {
		t.Fatalf("rows %v after Add at +3h", got)
	}
	if st := s.Stats(); st.Expired != 2 || st.Evicted != 0 || st.Rows != 2 {
		t.Fatalf("stats %+v", st)
	}
	if _, err := Open(db.Root().Sub("q2"), Options{MaxAge: -time.Second}); !errors.Is(err, ErrBadOptions) {
		t.Fatalf("negative max age: %v", err)
	}
}
