package modelstore

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestTornOwnFiles simulates a power loss that tears the files the agent writes itself (not
// badger's: its activation journal lives in the state database): the .verified marker of the
// current and of the previous version, their model files, and the .partial meta file and the
// file of a download in progress. Each is cut at every byte boundary (the markers and the meta: mid-key,
// mid-value, mid-digest, the closing brace) or at the edges and middle (the model files), and
// the store is opened and recovered as the agent does at start. It must start (no panic, no
// error), keep every version that is still whole, point current at one that verifies, and say
// what it dropped: a Recovery naming the torn version, or a warning naming the discarded
// download. A complete record is never dropped silently.
func TestTornOwnFiles(t *testing.T) {
	e := newEnv(t)
	s := e.store(t, HealthCheck{})
	for v := 1; v <= 2; v++ {
		if err := install(t, s, v); err != nil {
			t.Fatal(err)
		}
		if err := s.Activate(context.Background(), testModel, v); err != nil {
			t.Fatal(err)
		}
	}
	p, _, err := s.OpenPartial(testModel, 3, manifestDigest(3), fileDigest(3), int64(len(content(3))))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.WriteAt(content(3)[:40<<10], 0); err != nil {
		t.Fatal(err)
	}
	p.Close()
	pristine := s.Dir()
	modelDir := filepath.Join(pristine, testModel)

	type target struct {
		rel string // under the model's directory
		// whole says the cut is a whole-file cut (markers, meta); else edges and middle only.
		whole bool
		// wantCur, wantPrev after recovery; dropped is what the recovery must name.
		wantCur, wantPrev int
		dropped           string
	}
	targets := []target{
		{"2/" + MarkerFile, true, 1, 0, "@2"},
		{"1/" + MarkerFile, true, 2, 0, "@1"},
		{"2/" + ModelFile, false, 1, 0, "@2"},
		{"1/" + ModelFile, false, 2, 0, "@1"},
		{partialPrefix + "3/" + partialMetaFile, true, 2, 1, "discarding partial download"},
		{partialPrefix + "3/" + ModelFile, false, 2, 1, "discarding partial download"},
	}
	cases := 0
	for _, tg := range targets {
		orig, err := os.ReadFile(filepath.Join(modelDir, tg.rel))
		if err != nil {
			t.Fatal(err)
		}
		cuts := []int{0, 1, len(orig) / 2, len(orig) - 1}
		if tg.whole {
			cuts = cuts[:0]
			// Up to the last byte of the JSON object (a cut trailing newline tears nothing).
			for n := 0; n < len(bytes.TrimRight(orig, "\n")); n++ {
				cuts = append(cuts, n)
			}
		}
		for _, n := range cuts {
			cases++
			name := fmt.Sprintf("%s cut at %d of %d", tg.rel, n, len(orig))
			dir := t.TempDir()
			if out, err := exec.Command("cp", "-a", pristine+"/.", dir).CombinedOutput(); err != nil {
				t.Fatalf("copy the model directory: %v: %s", err, out)
			}
			if err := os.Truncate(filepath.Join(dir, testModel, tg.rel), int64(n)); err != nil {
				t.Fatal(err)
			}
			var logs bytes.Buffer
			s2, err := Open(e.db.Root().Sub("models"), Options{Dir: dir, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			if err != nil {
				t.Fatalf("%s: open: %v", name, err)
			}
			recs, err := s2.Recover(context.Background())
			if err != nil {
				t.Fatalf("%s: recover: %v", name, err)
			}
			md := filepath.Join(dir, testModel)
			for link, want := range map[string]int{CurrentLink: tg.wantCur, PreviousLink: tg.wantPrev} {
				if got, err := readLink(md, link); err != nil || got != want {
					t.Fatalf("%s: %s -> %d (%v), want %d", name, link, got, err, want)
				}
			}
			if _, err := verifyDir(s2.versionDir(testModel, tg.wantCur), testModel, tg.wantCur, true); err != nil {
				t.Fatalf("%s: current does not verify: %v", name, err)
			}
			b, err := os.ReadFile(s2.CurrentPath(testModel))
			if err != nil || !bytes.Equal(b, content(tg.wantCur)) {
				t.Fatalf("%s: current/model is not version %d's file: %v", name, tg.wantCur, err)
			}
			said := logs.String()
			for _, r := range recs {
				if r.Err != nil {
					said += r.Err.Error()
				}
			}
			if !strings.Contains(said, tg.dropped) {
				t.Fatalf("%s: the recovery does not say it dropped %q: recoveries %+v, log:\n%s", name, tg.dropped, recs, logs.String())
			}
			if tg.wantPrev == 0 {
				continue
			}
			// The torn download is gone or discarded: opening it again starts afresh.
			parts, err := s2.Partials(testModel)
			if err != nil || len(parts) != 0 {
				t.Fatalf("%s: partials %+v %v after a torn meta file", name, parts, err)
			}
			p, _, err := s2.OpenPartial(testModel, 3, manifestDigest(3), fileDigest(3), int64(len(content(3))))
			if err != nil || p.Resumed() {
				t.Fatalf("%s: reopened partial resumed=%v err=%v", name, p != nil && p.Resumed(), err)
			}
			p.Close()
		}
	}
	t.Logf("%d torn files recovered", cases)
}
