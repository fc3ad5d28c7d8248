package modelstore

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/driftline/driftline/agent/devicedb"
)

// Crash tests: the test binary re-executes itself as a child that installs version 2 over an
// installed version 1 and is killed with SIGKILL at one step. The parent then checks, before and
// after Recover, that current is a whole old or whole new model.
const (
	envChild  = "DL_MODELSTORE_CRASH_CHILD"
	envModels = "DL_MODELSTORE_MODELS"
	envState  = "DL_MODELSTORE_STATE"
	envStep   = "DL_MODELSTORE_CRASH_AT"
	envHealth = "DL_MODELSTORE_HEALTH"
)

func TestMain(m *testing.M) {
	if os.Getenv(envChild) == "1" {
		os.Exit(crashChild())
	}
	os.Exit(m.Run())
}

// crashChild installs version 2, killing itself at the step named in envStep. It returns 0 if it
// got through, 1 on an error.
func crashChild() int {
	step := os.Getenv(envStep)
	testHook = func(s string) {
		if s == step {
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {} // the signal is on its way
		}
	}
	db, err := devicedb.Open(os.Getenv(envState))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	var h HealthCheck
	if script := os.Getenv(envHealth); script != "" {
		h = HealthCheck{Argv: []string{"/bin/sh", "-c", script}, Timeout: time.Minute}
	}
	s, err := Open(db.Root().Sub("models"), Options{Dir: os.Getenv(envModels), Health: h, Logger: quiet()})
	if err == nil {
		err = s.Install(context.Background(), testModel, 2, manifestDigest(2), fileDigest(2), writer(content(2)))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func TestCrashDuringActivation(t *testing.T) {
	if _, err := os.Stat("/bin/sh"); err != nil {
		t.Skip("needs /bin/sh")
	}
	tests := []struct {
		name string
		// step is the hook at which the child kills itself; "" means the parent kills it
		// while its health check runs.
		step string
		// childHealth is the child's health check script ("" passes; ignored when step is "",
		// where the parent kills the child while its check runs).
		childHealth string
		// recoverHealth is the health check Recover runs ("" passes).
		recoverHealth string
		// wantCur and wantPrev are the links after Recover.
		wantCur, wantPrev int
	}{
		{"after writing part of the file", "partial", "", "", 1, 0},
		{"after the version dir is in place", "staged", "", "", 1, 0},
		{"after the journal, before the switch", "journaled", "", "", 2, 1},
		{"after switching current", "switched", "", "", 2, 1},
		{"just before the health check", "checking", "", "", 2, 1},
		{"during the health check", "", "", "", 2, 1},
		{"during the health check, which then fails", "", "", "exit 1", 1, 0},
		{"halfway through switching back", "rollback", "exit 1", "", 1, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			if err := install(t, e.store(t, HealthCheck{}), 1); err != nil {
				t.Fatal(err)
			}
			e.close(t)

			marker := filepath.Join(t.TempDir(), "health-pid")
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), envChild+"=1", envModels+"="+e.modelDir, envState+"="+e.stateDir, envStep+"="+tc.step)
			if tc.childHealth != "" {
				cmd.Env = append(cmd.Env, envHealth+"="+tc.childHealth)
			}
			if tc.step == "" {
				cmd.Env = append(cmd.Env, envHealth+"=echo $$ > "+marker+".tmp && mv "+marker+".tmp "+marker+"; exec sleep 60")
			}
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			if tc.step == "" {
				waitFile(t, marker)
				if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
			}
			err := cmd.Wait()
			ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
			if !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
				t.Fatalf("child was not killed at %q: %v; stderr:\n%s", tc.step, err, stderr.String())
			}
			if tc.step == "" {
				killHealthCheck(t, marker)
			}
			checkHoldsBeforeRecover(t, e.modelDir)

			e.open(t)
			var h HealthCheck
			if tc.recoverHealth != "" {
				h = sh(t, tc.recoverHealth)
			}
			s := e.store(t, h)
			rs, err := s.Recover(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("recovery: %+v", rs)
			checkAtRest(t, s, tc.wantCur, tc.wantPrev)
		})
	}
}

// checkHoldsBeforeRecover asserts the invariant on the disk exactly as the crash left it:
// current points at a directory that verifies and is version 1 or version 2.
func checkHoldsBeforeRecover(t *testing.T, modelDir string) {
	t.Helper()
	d := filepath.Join(modelDir, testModel)
	v, err := readLink(d, CurrentLink)
	if err != nil || (v != 1 && v != 2) {
		t.Fatalf("after the kill current -> %d (%v)", v, err)
	}
	if _, err := verifyDir(filepath.Join(d, strconv.Itoa(v)), testModel, v, true); err != nil {
		t.Fatalf("after the kill current points at a model that does not verify: %v", err)
	}
	b, err := os.ReadFile(filepath.Join(d, CurrentLink, ModelFile))
	if err != nil || !bytes.Equal(b, content(v)) {
		t.Fatalf("after the kill current/model is not whole version %d: %v", v, err)
	}
}

// killHealthCheck ends the orphaned health-check process the killed child left running.
func killHealthCheck(t *testing.T, marker string) {
	t.Helper()
	b, err := os.ReadFile(marker)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
}
