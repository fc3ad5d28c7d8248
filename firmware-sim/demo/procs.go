package demo

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// procs starts the demo's child processes, each in its own process group, and stops them all:
// SIGTERM to every group, then SIGKILL to what is left after a grace period. Nothing the demo
// started outlives Stop.
type procs struct {
	logDir string
	env    []string
	mu     sync.Mutex
	list   []*proc
}

type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
	log  *os.File
}

// start runs argv with its output in LOGDIR/name.log.
func (p *procs) start(name string, argv ...string) (*proc, error) {
	lf, err := os.OpenFile(filepath.Join(p.logDir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.Env = append(os.Environ(), p.env...)
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	pr := &proc{name: name, cmd: cmd, done: make(chan struct{}), log: lf}
	go func() {
		pr.err = cmd.Wait()
		lf.Close()
		close(pr.done)
	}()
	p.mu.Lock()
	p.list = append(p.list, pr)
	p.mu.Unlock()
	return pr, nil
}

// exited reports whether the process has ended, and how.
func (pr *proc) exited() (bool, error) {
	select {
	case <-pr.done:
		return true, pr.err
	default:
		return false, nil
	}
}

// stop ends one process group: SIGTERM, then SIGKILL after grace.
func (pr *proc) stop(grace time.Duration) {
	pgid := pr.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-pr.done:
	case <-time.After(grace):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-pr.done
	}
	// The group may hold children of the process that outlived it.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
}

// stopAll stops every process, the most recently started first (firmware, agents, then hub).
func (p *procs) stopAll(grace time.Duration) {
	p.mu.Lock()
	list := append([]*proc(nil), p.list...)
	p.list = nil
	p.mu.Unlock()
	var wg sync.WaitGroup
	for i := len(list) - 1; i >= 0; i-- {
		if list[i].name == "hub" {
			wg.Wait() // the hub last, so agents stop cleanly against a live broker
		}
		wg.Add(1)
		go func(pr *proc) {
			defer wg.Done()
			pr.stop(grace)
		}(list[i])
	}
	wg.Wait()
}

// run runs argv to completion with the demo's environment and returns its combined output.
func (p *procs) run(ctx context.Context, argv ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), p.env...)
	cmd.SysProcAttr = sysProcAttr()
	out, err := cmd.CombinedOutput()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return out, fmt.Errorf("%s: %w: %s", filepath.Base(argv[0]), err, lastLines(out))
		}
		return out, fmt.Errorf("%s: %w", filepath.Base(argv[0]), err)
	}
	return out, nil
}

func lastLines(b []byte) string {
	if len(b) > 400 {
		b = b[len(b)-400:]
	}
	return string(b)
}
