package chunkcache

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"testing"

	"github.com/driftline/driftline/agent/devicedb"
	"github.com/driftline/driftline/shared/artifact"
	"github.com/driftline/driftline/shared/zstdx"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// chunk returns n incompressible bytes derived from seed, and their digest.
func chunk(seed uint64, n int) ([]byte, string) {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b, artifact.DigestOf(b)
}

func memNS(t *testing.T) devicedb.Namespace {
	t.Helper()
	db, err := devicedb.OpenInMemory()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db.Namespace("dev").Sub("chunks")
}

func mustPut(t *testing.T, c *Cache, seed uint64, n int) string {
	t.Helper()
	b, d := chunk(seed, n)
	if err := c.Put(d, b); err != nil {
		t.Fatalf("Put(%d): %v", seed, err)
	}
	return d
}

// storedSize measures what one chunk of n random bytes costs against the cap.
func storedSize(t *testing.T, n int) int64 {
	t.Helper()
	c, err := Open(memNS(t), Options{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	mustPut(t, c, 999, n)
	return c.Stats().Bytes
}

func TestPutGetVerify(t *testing.T) {
	c, err := Open(memNS(t), Options{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	b, d := chunk(1, 4096)
	_, other := chunk(2, 10)
	tests := []struct {
		name   string
		digest string
		data   []byte
		want   error
	}{
		{"wrong bytes", other, b, ErrDigestMismatch},
		{"bad digest", "sha256:XYZ", b, artifact.ErrBadDigest},
		{"uppercase digest", "sha256:" + string(bytes.ToUpper([]byte(d[7:]))), b, artifact.ErrBadDigest},
		{"ok", d, b, nil},
		{"again", d, b, nil},
		{"empty chunk", artifact.DigestOf(nil), nil, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := c.Put(tc.digest, tc.data); !errors.Is(err, tc.want) {
				t.Fatalf("Put = %v, want %v", err, tc.want)
			}
		})
	}
	if c.Has(other) {
		t.Fatal("refused chunk is held")
	}
	got, err := c.Get(d)
	if err != nil || !bytes.Equal(got, b) {
		t.Fatalf("Get = %d bytes, %v", len(got), err)
	}
	if _, err := c.Get(other); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get missing = %v", err)
	}
	if s := c.Stats(); s.Entries != 2 {
		t.Fatalf("stats %+v", s)
	}
	small, err := Open(memNS(t), Options{Logger: quiet(), MaxItem: 100})
	if err != nil {
		t.Fatal(err)
	}
	if err := small.Put(d, b); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized Put = %v", err)
	}
}

func TestCapEvictsLeastRecentlyUsed(t *testing.T) {
	one := storedSize(t, 1000)
	c, err := Open(memNS(t), Options{MaxBytes: 3*one + one/2, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	d1, d2, d3 := mustPut(t, c, 1, 1000), mustPut(t, c, 2, 1000), mustPut(t, c, 3, 1000)
	if _, err := c.Get(d1); err != nil { // d2 is now the least recently used
		t.Fatal(err)
	}
	d4 := mustPut(t, c, 4, 1000)
	want := map[string]bool{d1: true, d2: false, d3: true, d4: true}
	for d, held := range want {
		if c.Has(d) != held {
			t.Errorf("Has(%s) = %v, want %v", d[:15], !held, held)
		}
	}
	if s := c.Stats(); s.Entries != 3 || s.Evicted != 1 || s.Bytes > 3*one+one/2 {
		t.Fatalf("stats %+v (one = %d)", s, one)
	}
	if err := c.Put(artifact.DigestOf(make([]byte, 0)), nil); err != nil {
		t.Fatal(err)
	}
	big, bd := chunk(9, 8000)
	if err := c.Put(bd, big); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("chunk over the whole cap: %v", err)
	}
}

func TestPinsAreNeverEvicted(t *testing.T) {
	one := storedSize(t, 1000)
	c, err := Open(memNS(t), Options{MaxBytes: 3*one + one/2, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	_, d1 := chunk(1, 1000)
	_, d2 := chunk(2, 1000)
	// The downloading version pins before its chunks arrive.
	if err := c.Pin("model-a@2", []string{d1, d2, d1}); err != nil {
		t.Fatal(err)
	}
	mustPut(t, c, 1, 1000)
	mustPut(t, c, 2, 1000)
	d3 := mustPut(t, c, 3, 1000)
	d4 := mustPut(t, c, 4, 1000) // evicts d3, the only unpinned one
	if !c.Has(d1) || !c.Has(d2) || c.Has(d3) || !c.Has(d4) {
		t.Fatalf("after eviction: d1 %v d2 %v d3 %v d4 %v", c.Has(d1), c.Has(d2), c.Has(d3), c.Has(d4))
	}
	// Pin d4 too: the cache is full of pinned chunks, an unpinned Put has no room.
	if err := c.Pin("model-a@1", []string{d4}); err != nil {
		t.Fatal(err)
	}
	b5, d5 := chunk(5, 1000)
	if err := c.Put(d5, b5); !errors.Is(err, ErrNoRoom) {
		t.Fatalf("unpinned Put into pinned cache = %v", err)
	}
	// A pinned chunk is stored over the cap.
	b6, d6 := chunk(6, 1000)
	if err := c.Pin("model-b@1", []string{d6}); err != nil {
		t.Fatal(err)
	}
	if err := c.PutIfRoom(d6, b6); !errors.Is(err, ErrNoRoom) || c.Has(d6) {
		t.Fatalf("PutIfRoom of a pinned chunk over the cap = %v (held %v), want ErrNoRoom", err, c.Has(d6))
	}
	if err := c.Put(d6, b6); err != nil {
		t.Fatalf("pinned Put over cap = %v", err)
	}
	if s := c.Stats(); s.PinnedEntries != 4 || s.Entries != 4 {
		t.Fatalf("stats %+v", s)
	}
	// Unpinning makes them evictable again, oldest first.
	if err := c.Unpin("model-a@2"); err != nil {
		t.Fatal(err)
	}
	if err := c.Unpin("model-b@1"); err != nil {
		t.Fatal(err)
	}
	mustPut(t, c, 5, 1000)
	if c.Has(d1) || c.Has(d2) || !c.Has(d4) || !c.Has(d5) {
		t.Fatalf("after unpin: d1 %v d2 %v d4 %v d5 %v", c.Has(d1), c.Has(d2), c.Has(d4), c.Has(d5))
	}
	if err := c.Pin("x", []string{"nope"}); !errors.Is(err, artifact.ErrBadDigest) {
		t.Fatalf("Pin bad digest = %v", err)
	}
}

func TestCorruptEntryIsDeletedAndMissing(t *testing.T) {
	tests := []struct {
		name   string
		damage func([]byte) []byte
	}{
		{"flipped bits", func(v []byte) []byte { v[len(v)/2] ^= 0x55; return v }},
		{"truncated", func(v []byte) []byte { return v[:len(v)/2] }},
		{"valid zstd of other bytes", func([]byte) []byte {
			b, _ := chunk(77, 500)
			return zstdx.Encode(nil, b)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ns := memNS(t)
			c, err := Open(ns, Options{Logger: quiet()})
			if err != nil {
				t.Fatal(err)
			}
			d := mustPut(t, c, 1, 3000)
			s, _ := artifact.ParseDigest(d)
			v, err := c.data.Get(s[:])
			if err != nil {
				t.Fatal(err)
			}
			if err := c.data.Set(s[:], tc.damage(v)); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Get(d); !errors.Is(err, ErrNotFound) {
				t.Fatalf("Get corrupt = %v, want ErrNotFound", err)
			}
			if c.Has(d) {
				t.Fatal("corrupt entry still held")
			}
			if st := c.Stats(); st.Corrupt != 1 || st.Entries != 0 || st.Bytes != 0 {
				t.Fatalf("stats %+v", st)
			}
			if _, err := c.data.Get(s[:]); !errors.Is(err, devicedb.ErrNotFound) {
				t.Fatalf("corrupt bytes still on disk: %v", err)
			}
		})
	}
}

func TestSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	one := storedSize(t, 1000)
	opts := Options{MaxBytes: 3*one + one/2, Logger: quiet()}
	db, err := devicedb.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	c, err := Open(db.Root().Sub("chunks"), opts)
	if err != nil {
		t.Fatal(err)
	}
	d1, d2, d3 := mustPut(t, c, 1, 1000), mustPut(t, c, 2, 1000), mustPut(t, c, 3, 1000)
	if _, err := c.Get(d1); err != nil { // order now d2 (oldest), d3, d1
		t.Fatal(err)
	}
	if err := c.Pin("active", []string{d2}); err != nil {
		t.Fatal(err)
	}
	// Bookkeeping damaged behind the cache's back: an orphan meta entry and a bad one.
	_, orphan := chunk(50, 10)
	osum, _ := artifact.ParseDigest(orphan)
	if err := c.meta.Set(osum[:], encodeMeta(&entry{tick: 1, size: 100})); err != nil {
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
	c, err = Open(db.Root().Sub("chunks"), opts)
	if err != nil {
		t.Fatal(err)
	}
	if s := c.Stats(); s.Entries != 3 || s.PinnedEntries != 1 || s.Corrupt != 1 {
		t.Fatalf("after restart: %+v", s)
	}
	d4 := mustPut(t, c, 4, 1000) // d2 is pinned, so d3 is the LRU victim
	for d, held := range map[string]bool{d1: true, d2: true, d3: false, d4: true} {
		if c.Has(d) != held {
			t.Errorf("Has(%s) = %v, want %v", d[:15], !held, held)
		}
	}
	b1, _ := chunk(1, 1000)
	if got, err := c.Get(d1); err != nil || !bytes.Equal(got, b1) {
		t.Fatalf("Get after restart: %v", err)
	}
}

func TestDecodeMeta(t *testing.T) {
	tests := []struct {
		b  []byte
		ok bool
	}{
		{encodeMeta(&entry{tick: 5, size: 100}), true},
		{nil, false},
		{make([]byte, 15), false},
		{encodeMeta(&entry{tick: 5, size: 0}), false},
		{encodeMeta(&entry{tick: 5, size: -1}), false},
	}
	for i, tc := range tests {
		_, _, err := decodeMeta(tc.b)
		if (err == nil) != tc.ok {
			t.Errorf("case %d: err %v", i, err)
		}
	}
}

func FuzzDecodeMeta(f *testing.F) {
	f.Add(encodeMeta(&entry{tick: 5, size: 100}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		tick, size, err := decodeMeta(b)
		if err != nil {
			if !errors.Is(err, ErrCorruptMeta) {
				t.Fatalf("error does not wrap ErrCorruptMeta: %v", err)
			}
			return
		}
		if !bytes.Equal(encodeMeta(&entry{tick: tick, size: size}), b) {
			t.Fatal("decode/encode not inverse")
		}
	})
}

func FuzzGetStored(f *testing.F) {
	// Whatever bytes sit in the data store, Get returns them verified or ErrNotFound, no panic.
	f.Add([]byte{0x28, 0xb5, 0x2f, 0xfd, 0, 0, 0, 0})
	f.Add([]byte("plain"))
	f.Fuzz(func(t *testing.T, stored []byte) {
		db, err := devicedb.OpenInMemory()
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		c, err := Open(db.Root(), Options{Logger: quiet()})
		if err != nil {
			t.Fatal(err)
		}
		b, d := chunk(3, 64)
		if err := c.Put(d, b); err != nil {
			t.Fatal(err)
		}
		s, _ := artifact.ParseDigest(d)
		if err := c.data.Set(s[:], stored); err != nil {
			t.Fatal(err)
		}
		got, err := c.Get(d)
		if err == nil && !bytes.Equal(got, b) {
			t.Fatal("Get returned unverified bytes")
		}
		if err != nil && !errors.Is(err, ErrNotFound) {
			t.Fatalf("Get = %v", err)
		}
		_ = fmt.Sprint(c.Stats())
	})
}

func TestConcurrentUse(t *testing.T) {
	one := storedSize(t, 1000)
	ns := memNS(t)
	c, err := Open(ns, Options{MaxBytes: 20 * one, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	_, pinned := chunk(0, 1000)
	if err := c.Pin("active", []string{pinned}); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 4)
	for w := range 4 {
		go func() {
			for i := range 40 {
				seed := uint64(w*1000 + i%30)
				if i%2 == 1 {
					seed = uint64(i % 30) // the same chunks Put by every worker at once
				}
				if i%30 == 0 {
					seed = 0 // everyone also touches the pinned chunk
				}
				b, d := chunk(seed, 1000)
				if err := c.Put(d, b); err != nil {
					done <- err
					return
				}
				if got, err := c.Get(d); err == nil && !bytes.Equal(got, b) {
					done <- fmt.Errorf("Get returned other bytes for %s", d)
					return
				}
			}
			done <- nil
		}()
	}
	for range 4 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	s := c.Stats()
	if s.Bytes > 20*one || !c.Has(pinned) || s.Evicted == 0 {
		t.Fatalf("after concurrent use: %+v, pinned held %v", s, c.Has(pinned))
	}
	// What is on disk is what the index holds: nothing stored twice, nothing left unindexed.
	again, err := Open(ns, Options{MaxBytes: 20 * one, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	if r := again.Stats(); r.Entries != s.Entries || r.Bytes != s.Bytes || r.Corrupt != 0 {
		t.Fatalf("reopened: %+v, before: %+v", r, s)
	}
}
