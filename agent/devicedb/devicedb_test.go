package devicedb

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func openMem(t *testing.T) *DB {
	t.Helper()
	db, err := OpenInMemory()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func keys(t *testing.T, n Namespace, reverse bool) []string {
	t.Helper()
	var out []string
	err := n.Iterate(reverse, func(k, v []byte) error {
		out = append(out, string(k)+"="+string(v))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestNamespacesAreDisjoint(t *testing.T) {
	db := openMem(t)
	root := db.Root()
	// Neighbours chosen so that naive concatenated prefixes would collide.
	spaces := map[string]Namespace{
		"root":      root,
		"a":         root.Sub("a"),
		"ab":        root.Sub("ab"),
		"a/b":       root.Sub("a").Sub("b"),
		"a\x01b":    root.Sub("a\x01b"),
		"dev-1":     db.Namespace("dev-1"),
		"dev-1/out": db.Namespace("dev-1").Sub("out"),
		"dev-10":    db.Namespace("dev-10"),
		"k":         root.Sub("k"),
		"ff":        root.Sub("\xff"),
	}
	rawKeys := []string{"", "x", "k", "s\x01a", "\xff\xff", "y"}
	for name, ns := range spaces {
		for _, k := range rawKeys {
			if err := ns.Set([]byte(k), []byte(name)); err != nil {
				t.Fatal(err)
			}
		}
	}
	for name, ns := range spaces {
		got := keys(t, ns, false)
		if len(got) != len(rawKeys) {
			t.Fatalf("%s: %d keys, want %d: %q", name, len(got), len(rawKeys), got)
		}
		for _, kv := range got {
			if !strings.HasSuffix(kv, "="+name) {
				t.Errorf("%s sees foreign entry %q", name, kv)
			}
		}
		rev := keys(t, ns, true)
		for i := range got {
			if rev[len(rev)-1-i] != got[i] {
				t.Fatalf("%s: reverse %q is not forward %q reversed", name, rev, got)
			}
		}
	}
}

func TestGetSetDelete(t *testing.T) {
	ns := openMem(t).Namespace("dev")
	tests := []struct {
		name string
		op   func() error
		key  string
		want string // "" means ErrNotFound
	}{
		{"missing", func() error { return nil }, "a", ""},
		{"set", func() error { return ns.Set([]byte("a"), []byte("1")) }, "a", "1"},
		{"overwrite", func() error { return ns.Set([]byte("a"), []byte("2")) }, "a", "2"},
		{"delete", func() error { return ns.Delete([]byte("a")) }, "a", ""},
		{"delete missing", func() error { return ns.Delete([]byte("zz")) }, "zz", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.op(); err != nil {
				t.Fatal(err)
			}
			v, err := ns.Get([]byte(tc.key))
			if tc.want == "" {
				if !errors.Is(err, ErrNotFound) {
					t.Fatalf("Get = %q, %v; want ErrNotFound", v, err)
				}
				return
			}
			if err != nil || string(v) != tc.want {
				t.Fatalf("Get = %q, %v; want %q", v, err, tc.want)
			}
		})
	}
}

func TestIterateStopAndError(t *testing.T) {
	ns := openMem(t).Root().Sub("it")
	for i := range 5 {
		if err := ns.Set(fmt.Appendf(nil, "%d", i), nil); err != nil {
			t.Fatal(err)
		}
	}
	var seen []string
	err := ns.Iterate(true, func(k, _ []byte) error {
		seen = append(seen, string(k))
		if len(seen) == 2 {
			return ErrStop
		}
		return nil
	})
	if err != nil || strings.Join(seen, ",") != "4,3" {
		t.Fatalf("reverse stop: %v, %v", seen, err)
	}
	boom := errors.New("boom")
	if err := ns.IterateKeys(false, func([]byte, int64) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("callback error not returned: %v", err)
	}
}

func TestTxnSpansChildrenAtomically(t *testing.T) {
	ns := openMem(t).Namespace("dev")
	boom := errors.New("boom")
	err := ns.Update(func(tx *Txn) error {
		if err := tx.Sub("a").Set([]byte("k"), []byte("1")); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatal(err)
	}
	if _, err := ns.Sub("a").Get([]byte("k")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("aborted write visible: %v", err)
	}
	err = ns.Update(func(tx *Txn) error {
		if err := tx.Sub("a").Set([]byte("k"), []byte("1")); err != nil {
			return err
		}
		return tx.Sub("b").Set([]byte("k"), []byte("2"))
	})
	if err != nil {
		t.Fatal(err)
	}
	for sub, want := range map[string]string{"a": "1", "b": "2"} {
		if v, err := ns.Sub(sub).Get([]byte("k")); err != nil || string(v) != want {
			t.Fatalf("%s: %q %v", sub, v, err)
		}
	}
}

func TestSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Namespace("dev-7").Sub("journal").Set([]byte("m"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	if err := db.Root().Sync(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db, err = Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	v, err := db.Namespace("dev-7").Sub("journal").Get([]byte("m"))
	if err != nil || string(v) != "v" {
		t.Fatalf("after reopen: %q %v", v, err)
	}
}

func TestValidName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"", false}, {"a", true}, {strings.Repeat("x", 255), true}, {strings.Repeat("x", 256), false},
	}
	for _, tc := range tests {
		err := ValidName(tc.name)
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrBadName)) {
			t.Errorf("ValidName(len %d) = %v", len(tc.name), err)
		}
	}
}

func TestIterateFrom(t *testing.T) {
	db := openMem(t)
	ns := db.Namespace("q")
	for _, k := range []string{"a", "b", "c", "d"} {
		if err := ns.Set([]byte(k), nil); err != nil {
			t.Fatal(err)
		}
	}
	// A neighbour namespace's keys must not leak in.
	if err := db.Namespace("r").Set([]byte("a"), nil); err != nil {
		t.Fatal(err)
	}
	tests := []struct{ from, want string }{
		{"", "a,b,c,d"}, {"b", "b,c,d"}, {"bb", "c,d"}, {"e", ""},
	}
	for _, tc := range tests {
		var got []string
		err := ns.IterateFrom([]byte(tc.from), func(k, _ []byte) error {
			got = append(got, string(k))
			return nil
		})
		if err != nil || strings.Join(got, ",") != tc.want {
			t.Errorf("IterateFrom(%q) = %v, %v; want %s", tc.from, got, err, tc.want)
		}
	}
}
