package node

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/driftline/driftline/internal/freeport"
	"github.com/driftline/driftline/internal/testhelp"
)

// smallDisk mounts a tmpfs of size bytes for the test (root only; skips loudly otherwise, and
// fails under DRIFTLINE_INTEGRATION=1 when it cannot).
func smallDisk(t *testing.T, size int64) string {
	t.Helper()
	dir := t.TempDir()
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d", size), "tmpfs", dir).CombinedOutput()
	if err != nil {
		msg := fmt.Sprintf("CANNOT MOUNT A SMALL FILE SYSTEM (needs root): the disk-full test did not run: %v %s", err, out)
		if os.Getenv("DRIFTLINE_INTEGRATION") == "1" {
			t.Fatal(msg)
		}
		t.Skip("!!! " + msg + " !!!")
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			maps, _ := os.ReadFile("/proc/self/maps")
			var held []string
			for _, l := range strings.Split(string(maps), "\n") {
				if strings.Contains(l, dir) {
					held = append(held, l)
				}
			}
			fds, _ := os.ReadDir("/proc/self/fd")
			for _, fd := range fds {
				if l, _ := os.Readlink("/proc/self/fd/" + fd.Name()); strings.Contains(l, dir) {
					held = append(held, l)
				}
			}
			t.Errorf("umount %s: %v %s; held: %v", dir, err, out, held)
		}
	})
	return dir
}

// TestDiskFullStopsNodeAndItCatchesUp: one node of three has its data dir on a small file system
// that fills up while the cluster takes writes. The node stops before a write can fail, naming
// the directory; the other two go on taking writes; once space is freed and the node started
// again, it catches up.
func TestDiskFullStopsNodeAndItCatchesUp(t *testing.T) {
	mnt := smallDisk(t, 192<<20)
	logger := func() *slog.Logger {
		return testhelp.Logger(t)
	}
	n1, tok := testNode(t)
	n2, err := Start(context.Background(), Config{DataDir: t.TempDir(), NodeID: "n2", HTTPAddr: "127.0.0.1:0",
		RaftAddr: fmt.Sprintf("127.0.0.1:%d", freeport.Port(t)), Join: n1.URL(), JoinToken: tok, Logger: logger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n2.Close() })
	dir3 := filepath.Join(mnt, "data")
	cfg3 := Config{DataDir: dir3, NodeID: "n3", HTTPAddr: "127.0.0.1:0", RaftAddr: fmt.Sprintf("127.0.0.1:%d", freeport.Port(t)),
		Join: n1.URL(), JoinToken: tok, DiskReserve: 48 << 20, DiskCheckInterval: 50 * time.Millisecond, Logger: logger()}
	n3, err := Start(context.Background(), cfg3)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n3.Close() })
	// A client writes through n1 and retries while the cluster has no leader (503): on a loaded
	// machine the leader may miss heartbeats and step down, which is no failure of this test.
	write := func(name string) {
		t.Helper()
		body, _ := json.Marshal(map[string]any{"name": name})
		var last string
		testhelp.WaitFor(t, 30*time.Second, "the cluster to take write "+name, func() bool {
			req, _ := http.NewRequest(http.MethodPost, n1.URL()+"/api/v1/datasets", bytes.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+tok)
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Idempotency-Key", "diskfull-"+name)
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				last = err.Error()
				return false
			}
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			last = fmt.Sprintf("%d %s", res.StatusCode, b)
			switch res.StatusCode {
			case http.StatusCreated:
				return true
			case http.StatusServiceUnavailable:
				return false
			}
			t.Fatalf("POST /api/v1/datasets %s: %s", name, last)
			return false
		})
	}
	write("before")
	testhelp.WaitFor(t, 20*time.Second, "n3 applies a write", func() bool { _, err := n3.Reader().Dataset("before"); return err == nil })

	// Something else fills the file system.
	free, err := freeBytes(mnt)
	if err != nil {
		t.Fatal(err)
	}
	filler := filepath.Join(mnt, "filler")
	if err := os.WriteFile(filler, make([]byte, free-32<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	select {
	case <-n3.Failed():
	case <-time.After(20 * time.Second):
		t.Fatal("n3 kept running with its data dir short of space")
	}
	if err := n3.FailErr(); !errors.Is(err, ErrDiskFull) || !strings.Contains(err.Error(), dir3) {
		t.Fatalf("n3 stopped with %v, want ErrDiskFull naming %s", err, dir3)
	}
	for i := range 20 {
		write(fmt.Sprintf("during-%02d", i))
	}
	// Started again while still full, it refuses.
	if n, err := Start(context.Background(), cfg3); err == nil {
		n.Close()
		t.Fatal("n3 started again with its data dir still full")
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	n3, err = Start(context.Background(), cfg3)
	if err != nil {
		t.Fatalf("restart after freeing space: %v", err)
	}
	t.Cleanup(func() { n3.Close() })
	testhelp.WaitFor(t, 30*time.Second, "n3 catches up", func() bool { _, err := n3.Reader().Dataset("during-19"); return err == nil })
}
