// Package testhelp holds the two helpers every test of the module shares: waiting for a
// condition (WaitFor) and a logger writing to t.Log (Logger, and LogWriter for its writer). Test
// code only. A port a child process binds is internal/freeport; a child process and its output
// are internal/hubproc; a running hub for a test is hub/node/nodetest.
package testhelp

import (
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// WaitFor polls cond until it holds, failing t after timeout with what it waited for. The poll
// interval is short; it is not a fixed delay.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Logger returns a logger writing text lines at level and above (slog.LevelWarn when none is
// given) to t.Log, so a passing run is quiet and a failing one shows them. Lines logged after
// the test ended (by goroutines still stopping) are dropped: t.Log panics then.
func Logger(t testing.TB, level ...slog.Level) *slog.Logger {
	lv := slog.LevelWarn
	if len(level) > 0 {
		lv = level[0]
	}
	return slog.New(slog.NewTextHandler(LogWriter(t), &slog.HandlerOptions{Level: lv}))
}

// LogWriter returns a writer sending each write to t.Log until the test ends (for a logger
// that also writes elsewhere, through io.MultiWriter).
func LogWriter(t testing.TB) io.Writer {
	w := &tWriter{t: t, on: true}
	t.Cleanup(func() { w.mu.Lock(); w.on = false; w.mu.Unlock() })
	return w
}

// tWriter sends each write to t.Log until the test ends.
type tWriter struct {
	t  testing.TB
	mu sync.Mutex
	on bool
}

func (w *tWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.on {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}
