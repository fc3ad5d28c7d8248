package modelstore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"time"
)

// Environment variables the health check receives.
const (
	EnvModelPath    = "DRIFTLINE_MODEL_PATH"    // the model file, MODELDIR/NAME/VERSION/model
	EnvModelDir     = "DRIFTLINE_MODEL_DIR"     // its version directory
	EnvModelName    = "DRIFTLINE_MODEL_NAME"    // the model's name
	EnvModelVersion = "DRIFTLINE_MODEL_VERSION" // the version, decimal
)

// stderrTail is how much of the health check's stderr an error carries.
const stderrTail = 2 << 10

// health runs the configured check for name@v, with the Timeout, in its own process group.
func (s *Store) health(ctx context.Context, name string, v int) error {
	argv := s.opts.Health.Argv
	if len(argv) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.opts.Health.Timeout)
	defer cancel()
	dir := s.versionDir(name, v)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(),
		EnvModelPath+"="+dir+string(os.PathSeparator)+ModelFile,
		EnvModelDir+"="+dir,
		EnvModelName+"="+name,
		EnvModelVersion+"="+strconv.Itoa(v),
	)
	tail := &tailBuffer{max: stderrTail}
	cmd.Stderr = tail
	cmd.Stdout = nil
	cmd.WaitDelay = 2 * time.Second // a grandchild holding stderr open must not hang us
	setProcessGroup(cmd)
	start := time.Now()
	err := cmd.Run()
	if err == nil {
		s.log.Info("health check passed", "model", name, "version", v, "took", time.Since(start))
		return nil
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		err = fmt.Errorf("timed out after %s: %w", s.opts.Health.Timeout, err)
	}
	return fmt.Errorf("%w: %s@%d: %v; stderr: %q", ErrHealthCheck, name, v, err, tail.String())
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if over := len(t.b) - t.max; over > 0 {
		t.b = append(t.b[:0], t.b[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}
