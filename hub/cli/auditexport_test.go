package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/driftline/driftline/hub/state"
)

// TestAuditExportPruneVerify: `audit export --prune` writes a checked export and prunes the hub's
// log through it; `audit verify` then checks the kept log from the checkpoint, `--export` checks
// the whole history, and a damaged, missing or foreign export makes verify fail (exit 1).
func TestAuditExportPruneVerify(t *testing.T) {
	h := startHub(t)
	for _, n := range []string{"a", "b", "c", "d"} {
		h.ok(t, "dataset", "create", n)
	}
	dir := t.TempDir()
	first := filepath.Join(dir, "audit-1.jsonl")
	out := h.ok(t, "audit", "export", first, "--through", "3", "--prune")
	if !strings.Contains(out, "pruned 3 audit entries") {
		t.Fatalf("export --prune: %q", out)
	}
	var res chainResult
	h.okJSON(t, &res, "audit", "verify")
	if !res.OK || res.CheckpointSeq != 3 {
		t.Fatalf("verify after the prune: %+v", res)
	}
	if out := h.ok(t, "audit", "verify"); !strings.Contains(out, "entries 1-3 were pruned") {
		t.Errorf("verify output %q", out)
	}
	h.okJSON(t, &res, "audit", "verify", "--export", first)
	if !res.OK || res.Exports != 1 {
		t.Fatalf("verify --export: %+v", res)
	}
	// A second export (no prune) and the first, given as a directory, chain into the kept log.
	second := filepath.Join(dir, "audit-2.jsonl")
	h.ok(t, "audit", "export", second, "--through", "5")
	h.okJSON(t, &res, "audit", "verify", "--export", dir)
	if !res.OK || res.Exports != 2 {
		t.Fatalf("verify --export DIR: %+v", res)
	}
	// An overlapping export (what a retention pass interrupted between export and prune leaves,
	// then covered again by the next pass) still chains.
	overlap := filepath.Join(t.TempDir(), "audit-3.jsonl")
	h.ok(t, "audit", "export", overlap, "--through", "6")
	h.okJSON(t, &res, "audit", "verify", "--export", dir, "--export", overlap)
	if !res.OK || res.Exports != 3 {
		t.Fatalf("verify with overlapping exports: %+v", res)
	}
	if r := h.run(t, "audit", "export", second); r.code != ExitUsage || !strings.Contains(r.stderr, "exists") {
		t.Errorf("export over an existing file: exit %d %s", r.code, r.stderr)
	}

	// Only the second export: the pruned entries 1-3 are missing.
	if r := h.run(t, "audit", "verify", "--export", second); r.code != ExitRefused || !strings.Contains(r.stderr, "missing") {
		t.Errorf("verify without the first export: exit %d %s", r.code, r.stderr)
	}
	// A changed byte in the first export.
	b, _ := os.ReadFile(first)
	bad := filepath.Join(t.TempDir(), "audit-1.jsonl")
	os.WriteFile(bad, bytes.Replace(b, []byte(`"raft_index":`), []byte(`"raft_index":1`), 1), 0o600)
	if r := h.run(t, "audit", "verify", "--export", bad); r.code != ExitRefused || !strings.Contains(r.stderr, "audit chain broken") {
		t.Errorf("verify with an edited export: exit %d %s", r.code, r.stderr)
	}
	// A valid export of another chain, ending at seq 3: not the hub's checkpoint.
	other := filepath.Join(t.TempDir(), "other.jsonl")
	f, _ := os.Create(other)
	x, _ := state.NewAuditExportWriter(f, 1, "")
	for _, e := range auditChain(3) {
		x.Add(e)
	}
	x.Close()
	f.Close()
	if r := h.run(t, "audit", "verify", "--export", other); r.code != ExitRefused || !strings.Contains(r.stderr, "checkpoint") {
		t.Errorf("verify with a foreign export: exit %d %s", r.code, r.stderr)
	}
	// Pruning what is already pruned is a usage error; a bad time too.
	if r := h.run(t, "audit", "export", filepath.Join(dir, "x"), "--through", "2"); r.code != ExitUsage {
		t.Errorf("export --through a pruned entry: exit %d %s", r.code, r.stderr)
	}
	if r := h.run(t, "audit", "export", filepath.Join(dir, "y"), "--before", "yesterday"); r.code != ExitUsage {
		t.Errorf("export --before yesterday: exit %d %s", r.code, r.stderr)
	}
}

// TestVerifyExportsOverlap: exports that overlap (a retention pass interrupted between export and
// prune, then repeated) form one chain; a contained or overlapping file of another chain does not.
func TestVerifyExportsOverlap(t *testing.T) {
	chain := auditChain(10)
	dir := t.TempDir()
	write := func(name string, from, to int, entries []state.AuditEntry) string {
		p := filepath.Join(dir, name)
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		prev := ""
		if from > 1 {
			prev = entries[from-2].Hash
		}
		x, _ := state.NewAuditExportWriter(f, uint64(from), prev)
		for _, e := range entries[from-1 : to] {
			if err := x.Add(e); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := x.Close(); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := []string{write("a", 1, 5, chain), write("b", 1, 3, chain), write("c", 4, 8, chain), write("d", 6, 10, chain)}
	ch, err := verifyExports(good, 10)
	if err != nil || ch.lastSeq != 10 || ch.atCP != chain[9].Hash || ch.files != 4 {
		t.Fatalf("overlapping exports: %+v %v", ch, err)
	}
	other := auditChain(3)
	other[2].Detail = "forged"
	other[2].Hash = state.AuditHash(other[2])
	if _, err := verifyExports(append(good, write("e", 1, 3, other)), 10); err == nil || !strings.Contains(err.Error(), "ends on hash") {
		t.Fatalf("a contained export of another chain: %v", err)
	}
	if _, err := verifyExports([]string{good[1], good[3]}, 10); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("a gap between exports: %v", err)
	}
}
