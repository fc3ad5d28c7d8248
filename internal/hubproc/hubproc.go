// Package hubproc runs the project's binaries as child processes for tests: `driftline hub serve`
// nodes on loopback (Hub: start, SIGKILL, SIGTERM with a deadline, SIGSTOP/SIGCONT, restart on the
// same data dir and addresses) and any other command (Process: an agent, a CLI call that keeps
// running), their output kept for the test's failure message, and a client for the hub's HTTP API
// with the admin token. It is the one harness for hub processes: systemtest/ and internal/chaos
// build their clusters on it. Test code only; in-process hubs are hub/node/nodetest.
package hubproc

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/driftline/driftline/internal/freeport"
	"github.com/driftline/driftline/internal/testhelp"
)

// Build builds the main package pkg (an import path) into dir/name and returns its path.
func Build(dir, name, pkg string) (string, error) {
	bin := filepath.Join(dir, name)
	cmd := exec.Command("go", "build", "-o", bin, pkg)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("build %s: %w", pkg, err)
	}
	return bin, nil
}

// BuildHub builds `driftline` into dir.
func BuildHub(dir string) (string, error) {
	return Build(dir, "driftline", "github.com/driftline/driftline/hub/cmd/driftline")
}

// BuildAgent builds `driftline-agent` into dir.
func BuildAgent(dir string) (string, error) {
	return Build(dir, "driftline-agent", "github.com/driftline/driftline/agent/cmd/driftline-agent")
}

// Output collects a process's stdout and stderr (or an in-process logger's lines a test reads
// back), safe for the writer and the test reading it concurrently. It keeps the last 2-4 MiB.
type Output struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (o *Output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.b.Len() > 4<<20 { // keep the tail
		rest := append([]byte(nil), o.b.Bytes()[o.b.Len()-(2<<20):]...)
		o.b.Reset()
		o.b.Write(rest)
	}
	return o.b.Write(p)
}

// String returns everything kept.
func (o *Output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.String()
}

// Tail returns the last n bytes kept, marked with "..." when cut.
func (o *Output) Tail(n int) string {
	s := o.String()
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// Process is one running child process.
type Process struct {
	cmd    *exec.Cmd
	exited chan struct{}

	mu     sync.Mutex
	paused bool
	done   bool
	err    error
}

// Start starts bin with args, its output appended to out and its environment PATH, HOME=home and
// env.
func Start(out *Output, home string, env []string, bin string, args ...string) (*Process, error) {
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + home}, env...)
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &Process{cmd: cmd, exited: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		p.mu.Lock()
		p.done, p.err = true, err
		p.mu.Unlock()
		close(p.exited)
	}()
	return p, nil
}

// Exited is closed once the process has exited and been waited for.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// Err is the process's exit error (nil for exit status 0) once it has exited.
func (p *Process) Err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// Paused reports whether the process was stopped with SIGSTOP and not resumed since.
func (p *Process) Paused() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.paused
}

// Pid is the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Signal sends sig to the process (nothing once it has exited).
func (p *Process) Signal(sig syscall.Signal) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done {
		return
	}
	_ = p.cmd.Process.Signal(sig)
	switch sig {
	case syscall.SIGSTOP:
		p.paused = true
	case syscall.SIGCONT:
		p.paused = false
	}
}

// Kill ends the process with SIGKILL (no clean shutdown) and waits for it.
func (p *Process) Kill() {
	p.Signal(syscall.SIGKILL)
	<-p.exited
}

// Stop ends the process with SIGTERM (resuming it first when paused), as systemd would, and
// reports whether it exited within timeout. When it did not, it is sent SIGQUIT (a Go process
// dumps its goroutines into its output) and, 2 s later, SIGKILL.
func (p *Process) Stop(timeout time.Duration) bool {
	p.mu.Lock()
	paused := p.paused
	p.mu.Unlock()
	if paused {
		p.Signal(syscall.SIGCONT)
	}
	p.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		return true
	case <-time.After(timeout):
	}
	p.Signal(syscall.SIGQUIT)
	select {
	case <-p.exited:
	case <-time.After(2 * time.Second):
	}
	p.Kill()
	return false
}

// StartT is Start for a test: it fails t when the process cannot start, and at the end of the
// test stops it (SIGTERM, 30 s), failing t when it does not exit in time or exits with an error,
// and logs the tail of its output when t failed.
func StartT(t testing.TB, name string, env []string, bin string, args ...string) *Process {
	t.Helper()
	out := &Output{}
	p, err := Start(out, t.TempDir(), env, bin, args...)
	if err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(func() {
		if !p.Stop(30 * time.Second) {
			t.Errorf("%s did not stop within 30 s of SIGTERM", name)
		} else if err := p.Err(); err != nil {
			t.Errorf("%s exited: %v", name, err)
		}
		if t.Failed() {
			t.Logf("output of %s:\n%s", name, out.Tail(6000))
		}
	})
	return p
}

// Hub is one `driftline hub serve` node: its settings, kept across restarts, and its process
// while it runs.
type Hub struct {
	// ID is the node id; Dir its data dir.
	ID, Dir string
	// HTTP and Raft are the addresses the node listens on.
	HTTP, Raft string
	// AdvertiseRaft, when set, is the Raft address the node advertises (a proxy in front of it).
	AdvertiseRaft string
	// MQTT is the embedded broker's address; "" runs the node without one.
	MQTT string
	// Args are further `hub serve` arguments given at every start.
	Args []string
	// Env is further environment given at every start (PATH and HOME=Dir are always set).
	Env []string
	// Out collects the node's output over all its starts.
	Out *Output

	mu   sync.Mutex
	proc *Process
}

// NewHub returns the settings of a node id with its data dir under base and its API and Raft on
// free loopback ports (the broker off until MQTT is set).
func NewHub(t testing.TB, base, id string) *Hub {
	t.Helper()
	dir := filepath.Join(base, id)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	return &Hub{ID: id, Dir: dir, HTTP: freeport.Addr(t), Raft: freeport.Addr(t), Out: &Output{}}
}

// Start runs bin (a `driftline` binary) as `hub serve` with the node's settings, then Args, then
// extra (for example --join URL --join-token TOKEN). A node restarted on its addresses right
// after a kill may find one still held for a moment by the dead process's sockets: Start first
// waits until each can be bound again.
func (h *Hub) Start(t testing.TB, bin string, extra ...string) {
	t.Helper()
	if h.Running() {
		t.Fatalf("start %s: still running", h.ID)
	}
	if err := os.MkdirAll(h.Dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, addr := range []string{h.HTTP, h.Raft, h.MQTT} {
		if addr != "" {
			testhelp.WaitFor(t, 30*time.Second, h.ID+"'s address "+addr+" to be free", func() bool { return free(addr) })
		}
	}
	args := []string{"hub", "serve", "--node-id", h.ID, "--data", h.Dir, "--http", h.HTTP, "--raft", h.Raft, "--mqtt", h.MQTT}
	if h.AdvertiseRaft != "" {
		args = append(args, "--advertise-raft", h.AdvertiseRaft)
	}
	args = append(append(args, h.Args...), extra...)
	if h.Out == nil {
		h.Out = &Output{}
	}
	p, err := Start(h.Out, h.Dir, h.Env, bin, args...)
	if err != nil {
		t.Fatalf("start %s: %v", h.ID, err)
	}
	h.mu.Lock()
	h.proc = p
	h.mu.Unlock()
}

func free(addr string) bool {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// take returns the running process and forgets it (nil when the node is down).
func (h *Hub) take() *Process {
	h.mu.Lock()
	defer h.mu.Unlock()
	p := h.proc
	h.proc = nil
	return p
}

// Process returns the running process (nil when the node is down).
func (h *Hub) Process() *Process {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.proc
}

// Running reports whether the node's process runs (paused or not).
func (h *Hub) Running() bool { return h.Process() != nil }

// Kill ends the node with SIGKILL and waits for it.
func (h *Hub) Kill() {
	if p := h.take(); p != nil {
		p.Kill()
	}
}

// Stop ends the node with SIGTERM and reports whether it exited within timeout (see
// Process.Stop); a node that is down counts as stopped.
func (h *Hub) Stop(timeout time.Duration) bool {
	if p := h.take(); p != nil {
		return p.Stop(timeout)
	}
	return true
}

// Paused reports whether the node runs but is frozen (Pause without Resume).
func (h *Hub) Paused() bool {
	p := h.Process()
	return p != nil && p.Paused()
}

// Pause freezes the node with SIGSTOP.
func (h *Hub) Pause() { h.signal(syscall.SIGSTOP) }

// Resume thaws a paused node with SIGCONT.
func (h *Hub) Resume() { h.signal(syscall.SIGCONT) }

func (h *Hub) signal(sig syscall.Signal) {
	if p := h.Process(); p != nil {
		p.Signal(sig)
	}
}

// URL is the base URL of the node's API.
func (h *Hub) URL() string { return "http://" + h.HTTP }

// ReadToken waits until the node whose data dir is dir has written its admin token, and returns
// it.
func ReadToken(t testing.TB, dir string) string {
	t.Helper()
	var tok string
	testhelp.WaitFor(t, 30*time.Second, "the admin token in "+dir, func() bool {
		b, err := os.ReadFile(filepath.Join(dir, "admin.token"))
		tok = strings.TrimSpace(string(b))
		return err == nil && tok != ""
	})
	return tok
}
