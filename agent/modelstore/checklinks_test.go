package modelstore

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// TestCheckLinks: CheckLinks names current and previous when both verify, reports a previous
// or current whose file no longer hashes to its marker, and changes nothing on disk.
func TestCheckLinks(t *testing.T) {
	e := newEnv(t)
	s := e.store(t, HealthCheck{})
	for _, v := range []int{1, 2} {
		if err := install(t, s, v); err != nil {
			t.Fatal(err)
		}
	}
	cur, prev, err := CheckLinks(s.Dir(), testModel)
	if err != nil || cur.Version != 2 || prev.Version != 1 || cur.FileDigest != fileDigest(2) {
		t.Fatalf("CheckLinks = %d, %d, %v; want 2, 1", cur.Version, prev.Version, err)
	}
	if _, _, err := CheckLinks(s.Dir(), "no-such-model"); err != nil {
		t.Fatalf("a model with no directory: %v, want no links and no error", err)
	}
	for _, v := range []int{1, 2} {
		path := filepath.Join(s.Dir(), testModel, strconv.Itoa(v), ModelFile)
		bad := content(v)
		bad[len(bad)/2] ^= 0xff // same size: only the hash tells
		must(t, os.WriteFile(path, bad, 0o644))
		if _, _, err := CheckLinks(s.Dir(), testModel); err == nil {
			t.Fatalf("v%d torn: CheckLinks passed", v)
		}
		if got, err := os.ReadFile(path); err != nil || string(got) != string(bad) {
			t.Fatalf("CheckLinks changed %s", path)
		}
		must(t, os.WriteFile(path, content(v), 0o644))
	}
}
