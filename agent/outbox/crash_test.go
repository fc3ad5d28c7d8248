package outbox

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/driftline/driftline/agent/devicedb"
	"github.com/driftline/driftline/internal/testhelp"
)

// The crash test re-executes the test binary as a child that enqueues reports, publishes some
// and is killed with SIGKILL inside a publish, before the ack. The parent reopens the same state
// directory, as the restarted agent does.
const (
	envChild = "DL_OUTBOX_CRASH_CHILD"
	envDir   = "DL_OUTBOX_STATE"
	envAcks  = "DL_OUTBOX_ACKS"
)

func TestMain(m *testing.M) {
	if os.Getenv(envChild) == "1" {
		os.Exit(crashChild())
	}
	os.Exit(m.Run())
}

// killingBroker acknowledges acks publishes (printing each to stdout) and kills the process
// during the next one.
type killingBroker struct{ acks int }

func (b *killingBroker) Publish(_ context.Context, _ string, payload []byte, _ byte, _ bool) error {
	if b.acks == 0 {
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	}
	b.acks--
	fmt.Printf("%s\n", payload)
	return nil
}

func crashChild() int {
	db, err := devicedb.Open(os.Getenv(envDir))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	o, err := Open(db.Root().Sub("outbox"), Options{Logger: quiet()})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for i := 0; i < 30; i++ {
		if err := o.Enqueue(fmt.Sprintf("dl/v1/dev/d/t%d", i%3), []byte(fmt.Sprintf("report-%04d", i)), 1, i%2 == 0); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	acks, _ := strconv.Atoi(os.Getenv(envAcks))
	_ = o.Run(context.Background(), &killingBroker{acks: acks})
	return 1 // Run only returns if the kill did not happen
}

func TestKilledBeforeAckResends(t *testing.T) {
	tests := []struct{ acks int }{{0}, {7}, {29}}
	for _, tc := range tests {
		t.Run(fmt.Sprint(tc.acks, " acked"), func(t *testing.T) {
			dir := t.TempDir()
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), envChild+"=1", envDir+"="+dir, envAcks+"="+strconv.Itoa(tc.acks))
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
			if !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
				t.Fatalf("child not killed: %v; stderr:\n%s", err, stderr.String())
			}
			if n := bytes.Count(stdout.Bytes(), []byte("\n")); n != tc.acks {
				t.Fatalf("child acked %d, want %d", n, tc.acks)
			}

			db, err := devicedb.Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			// A cleanup, not a defer: it must run after runOutbox's cleanup has stopped Run
			// (cleanups run last-in first-out, after the test's defers).
			t.Cleanup(func() { db.Close() })
			o, err := Open(db.Root().Sub("outbox"), fastOpts())
			if err != nil {
				t.Fatal(err)
			}
			if d := o.Stats().Depth; d != 30-tc.acks {
				t.Fatalf("depth after restart = %d, want %d", d, 30-tc.acks)
			}
			b := newBroker(nil)
			runOutbox(t, o, b)
			testhelp.WaitFor(t, 10*time.Second, "resend", func() bool { return len(b.received()) == 30-tc.acks })
			checkInOrder(t, b.received(), tc.acks, 30)
		})
	}
}
