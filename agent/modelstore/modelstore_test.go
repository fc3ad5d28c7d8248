package modelstore

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestInstallKeepsTwoVersions(t *testing.T) {
	e := newEnv(t)
	s := e.store(t, sh(t, `test -s "$DRIFTLINE_MODEL_PATH"`))
	for v := 1; v <= 4; v++ {
		if err := install(t, s, v); err != nil {
			t.Fatalf("install %d: %v", v, err)
		}
	}
	checkAtRest(t, s, 4, 3)
	cur, err := s.Current(testModel)
	if err != nil || cur.Version != 4 || cur.Size != int64(len(content(4))) {
		t.Fatalf("Current = %+v, %v", cur, err)
	}
	if err := install(t, s, 4); err != nil { // already current: nothing to do
		t.Fatal(err)
	}
	checkAtRest(t, s, 4, 3)
}

func TestHealthCheckEnvironment(t *testing.T) {
	e := newEnv(t)
	out := filepath.Join(t.TempDir(), "env")
	s := e.store(t, sh(t, `printf '%s\n%s\n%s\n%s\n' "$DRIFTLINE_MODEL_PATH" "$DRIFTLINE_MODEL_DIR" "$DRIFTLINE_MODEL_NAME" "$DRIFTLINE_MODEL_VERSION" > `+out))
	if err := install(t, s, 7); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(s.Dir(), testModel, "7")
	want := strings.Join([]string{filepath.Join(dir, ModelFile), dir, testModel, "7"}, "\n") + "\n"
	if string(b) != want {
		t.Fatalf("health check saw\n%s\nwant\n%s", b, want)
	}
}

func TestHealthCheckFailureSwitchesBack(t *testing.T) {
	tests := []struct {
		name      string
		installed []int // installed with a passing check first
		wantCur   int
		wantPrev  int
	}{
		{"first version fails", nil, 0, 0},
		{"second version fails", []int{1}, 1, 0},
		{"third version fails", []int{1, 2}, 2, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			ok := e.store(t, HealthCheck{})
			for _, v := range tc.installed {
				if err := install(t, ok, v); err != nil {
					t.Fatal(err)
				}
			}
			bad := e.store(t, sh(t, `echo "loading $DRIFTLINE_MODEL_VERSION" >&2; echo "tensor shape mismatch" >&2; exit 3`))
			err := install(t, bad, 9)
			if !errors.Is(err, ErrHealthCheck) || !contains(err, "tensor shape mismatch") || !contains(err, "exit status 3") {
				t.Fatalf("install = %v; want ErrHealthCheck with stderr tail", err)
			}
			checkAtRest(t, bad, tc.wantCur, tc.wantPrev)
		})
	}
}

func TestHealthCheckTimeout(t *testing.T) {
	e := newEnv(t)
	if err := install(t, e.store(t, HealthCheck{}), 1); err != nil {
		t.Fatal(err)
	}
	h := sh(t, `echo slow >&2; sleep 30 & wait`)
	h.Timeout = 200 * time.Millisecond
	s := e.store(t, h)
	start := time.Now()
	err := install(t, s, 2)
	if !errors.Is(err, ErrHealthCheck) || !contains(err, "timed out") {
		t.Fatalf("install = %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("timeout took %s", d)
	}
	checkAtRest(t, s, 1, 0)
}

func TestSwitchBack(t *testing.T) {
	e := newEnv(t)
	s := e.store(t, HealthCheck{})
	for v := 1; v <= 2; v++ {
		if err := install(t, s, v); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.SwitchBack(context.Background(), testModel); err != nil {
		t.Fatal(err)
	}
	checkAtRest(t, s, 1, 2)
	// Switching back to a version whose health check now fails restores the links exactly.
	bad := e.store(t, sh(t, `exit 1`))
	if err := bad.SwitchBack(context.Background(), testModel); !errors.Is(err, ErrHealthCheck) {
		t.Fatalf("SwitchBack = %v", err)
	}
	checkAtRest(t, s, 1, 2)
}

func TestStageRejects(t *testing.T) {
	e := newEnv(t)
	s := e.store(t, HealthCheck{})
	ctx := context.Background()
	tests := []struct {
		name  string
		model string
		v     int
		file  string
		data  []byte
		want  error
	}{
		{"wrong bytes", testModel, 1, fileDigest(2), content(1), ErrDigestMismatch},
		{"truncated", testModel, 1, fileDigest(1), content(1)[:1000], ErrDigestMismatch},
		{"dotdot", "..", 1, fileDigest(1), content(1), ErrBadName},
		{"slash", "a/b", 1, fileDigest(1), content(1), ErrBadName},
		{"hidden", ".tmp-1", 1, fileDigest(1), content(1), ErrBadName},
		{"version 0", testModel, 0, fileDigest(1), content(1), ErrBadVersion},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := s.Stage(ctx, tc.model, tc.v, manifestDigest(1), tc.file, writer(tc.data))
			if !errors.Is(err, tc.want) {
				t.Fatalf("Stage = %v, want %v", err, tc.want)
			}
		})
	}
	checkAtRest(t, s, 0, 0)
	if err := s.Activate(ctx, testModel, 1); !errors.Is(err, ErrNotStaged) {
		t.Fatalf("Activate unstaged = %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.Stage(cctx, testModel, 1, manifestDigest(1), fileDigest(1), writer(content(1))); !errors.Is(err, context.Canceled) {
		t.Fatalf("Stage with cancelled ctx = %v", err)
	}
	checkAtRest(t, s, 0, 0)
}

// TestActivateRehashesChangedFile: Activate skips the hash of a file this Store staged only
// while it is the same, unchanged file (inode, size, modification time); one rewritten after
// staging is hashed and refused.
func TestActivateRehashesChangedFile(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	s := e.store(t, HealthCheck{})
	if err := s.Stage(ctx, testModel, 1, manifestDigest(1), fileDigest(1), writer(content(1))); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(s.Dir(), testModel, "1", ModelFile)
	bad := append([]byte(nil), content(1)...)
	bad[0] ^= 0xff // same size: only the hash tells
	must(t, os.WriteFile(path, bad, 0o644))
	// A rewrite within the file system's timestamp granularity could keep the old mtime; a
	// writer that comes later does not.
	later := time.Now().Add(time.Second)
	must(t, os.Chtimes(path, later, later))
	if err := s.Activate(ctx, testModel, 1); !errors.Is(err, ErrNotStaged) {
		t.Fatalf("Activate of a changed file = %v, want ErrNotStaged", err)
	}
}

func TestStageConflictAndRepair(t *testing.T) {
	e := newEnv(t)
	s := e.store(t, HealthCheck{})
	if err := install(t, s, 1); err != nil {
		t.Fatal(err)
	}
	// Version 1 is in use: other content under its number is refused.
	err := s.Stage(context.Background(), testModel, 1, manifestDigest(2), fileDigest(2), writer(content(2)))
	if !errors.Is(err, ErrConflict) {
		t.Fatalf("Stage over current = %v", err)
	}
	// A damaged, unused version directory is replaced.
	bogus := filepath.Join(s.Dir(), testModel, "2")
	if err := os.MkdirAll(bogus, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bogus, ModelFile), []byte("half"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := install(t, s, 2); err != nil {
		t.Fatal(err)
	}
	checkAtRest(t, s, 2, 1)
}

func TestActivateInterruptedThenRecovered(t *testing.T) {
	e := newEnv(t)
	if err := install(t, e.store(t, HealthCheck{}), 1); err != nil {
		t.Fatal(err)
	}
	started := filepath.Join(t.TempDir(), "started")
	s := e.store(t, sh(t, `touch `+started+`; sleep 30 & wait`))
	if err := s.Stage(context.Background(), testModel, 2, manifestDigest(2), fileDigest(2), writer(content(2))); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Activate(ctx, testModel, 2) }()
	waitFile(t, started)
	cancel() // the agent is stopping
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Activate = %v", err)
	}
	if err := s.Activate(context.Background(), testModel, 3); !errors.Is(err, ErrPending) {
		t.Fatalf("Activate with pending journal = %v", err)
	}
	rs, err := e.store(t, HealthCheck{}).Recover(context.Background())
	if err != nil || len(rs) != 1 || rs[0].Action != ActionCompleted || rs[0].Current != 2 {
		t.Fatalf("Recover = %+v, %v", rs, err)
	}
	checkAtRest(t, s, 2, 1)
}

func TestRecoverGivesUpAfterMaxAttempts(t *testing.T) {
	e := newEnv(t)
	s := e.store(t, HealthCheck{})
	for v := 1; v <= 2; v++ {
		if err := install(t, s, v); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Stage(context.Background(), testModel, 3, manifestDigest(3), fileDigest(3), writer(content(3))); err != nil {
		t.Fatal(err)
	}
	// As if the health check of version 3 had killed the agent twice.
	j := journal{Name: testModel, New: 3, Old: 2, OldPrevious: 1, Step: stepChecking, Attempts: 2}
	if err := setLink(filepath.Join(s.Dir(), testModel), PreviousLink, 2); err != nil {
		t.Fatal(err)
	}
	if err := setLink(filepath.Join(s.Dir(), testModel), CurrentLink, 3); err != nil {
		t.Fatal(err)
	}
	if err := s.saveJournal(j); err != nil {
		t.Fatal(err)
	}
	rs, err := s.Recover(context.Background())
	if err != nil || len(rs) != 1 || rs[0].Action != ActionRolledBack || !contains(rs[0].Err, "giving up") {
		t.Fatalf("Recover = %+v, %v", rs, err)
	}
	checkAtRest(t, s, 2, 1)
}

func TestRecoverRepairsDisk(t *testing.T) {
	tests := []struct {
		name     string
		damage   func(t *testing.T, modelDir string)
		wantCur  int
		wantPrev int
	}{
		{"leftover staging and temp link", func(t *testing.T, d string) {
			mustMkdir(t, filepath.Join(d, ".tmp-3-abc"))
			must(t, os.Symlink("3", filepath.Join(d, ".link-current-x")))
		}, 2, 1},
		{"version dir without marker", func(t *testing.T, d string) {
			mustMkdir(t, filepath.Join(d, "3"))
			must(t, os.WriteFile(filepath.Join(d, "3", ModelFile), []byte("x"), 0o644))
		}, 2, 1},
		{"current's file changed on disk", func(t *testing.T, d string) {
			flipByte(t, filepath.Join(d, "2", ModelFile))
		}, 1, 0},
		{"previous's marker damaged", func(t *testing.T, d string) {
			must(t, os.WriteFile(filepath.Join(d, "1", MarkerFile), []byte("{"), 0o644))
		}, 2, 0},
		{"both damaged", func(t *testing.T, d string) {
			flipByte(t, filepath.Join(d, "1", ModelFile))
			must(t, os.Remove(filepath.Join(d, "2", MarkerFile)))
		}, 0, 0},
		{"current link garbage", func(t *testing.T, d string) {
			must(t, os.Remove(filepath.Join(d, CurrentLink)))
			must(t, os.Symlink("../../etc", filepath.Join(d, CurrentLink)))
		}, 1, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			s := e.store(t, HealthCheck{})
			for v := 1; v <= 2; v++ {
				if err := install(t, s, v); err != nil {
					t.Fatal(err)
				}
			}
			tc.damage(t, filepath.Join(s.Dir(), testModel))
			if _, err := s.Recover(context.Background()); err != nil {
				t.Fatal(err)
			}
			checkAtRest(t, s, tc.wantCur, tc.wantPrev)
		})
	}
}

func TestRecoverDropsJournalOfRemovedModel(t *testing.T) {
	e := newEnv(t)
	s := e.store(t, HealthCheck{})
	if err := s.saveJournal(journal{Name: "gone", New: 2, Old: 1, Step: stepChecking, Attempts: 1}); err != nil {
		t.Fatal(err)
	}
	rs, err := s.Recover(context.Background())
	if err != nil || len(rs) != 1 || rs[0].Err == nil {
		t.Fatalf("Recover = %+v, %v", rs, err)
	}
	if _, pending, err := s.loadJournal("gone"); pending || err != nil {
		t.Fatalf("journal still pending: %v", err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func mustMkdir(t *testing.T, dir string) { t.Helper(); must(t, os.MkdirAll(dir, 0o755)) }

func flipByte(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	must(t, err)
	b[len(b)/2] ^= 1
	must(t, os.WriteFile(path, b, 0o644))
}

// waitFile waits until path exists.
func waitFile(t *testing.T, path string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(path); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", path)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
