// Package testhelp holds the helpers that tests across the module share: waiting for a
// condition, a logger writing to t.Log, free loopback addresses, and a buffer safe for a
// process's output copier and the test reading it. Test code only; a running hub for a test is
// hub/node/nodetest.
package testhelp

import (
	"bytes"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
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

// FreeAddr returns a loopback "127.0.0.1:PORT" that was free a moment ago (see FreePort).
func FreeAddr(t testing.TB) string {
	t.Helper()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t)))
}

// FreePort returns a loopback TCP port that was free a moment ago, for a process the test starts
// later with that port on its command line. It picks at random below the kernel's ephemeral range
// (ip_local_port_range): a port taken from that range (":0") is released before the process binds
// it, and in that gap the kernel may hand it to any outgoing connection on the machine, which on
// a busy machine running many tests it does ("address already in use"). A port is never handed
// out twice by one test binary.
func FreePort(t testing.TB) int {
	t.Helper()
	lo, hi := portRange()
	for range 200 {
		port := lo + rand.IntN(hi-lo)
		portsMu.Lock()
		taken := portsGiven[port]
		portsMu.Unlock()
		if taken {
			continue
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue
		}
		l.Close()
		portsMu.Lock()
		portsGiven[port] = true
		portsMu.Unlock()
		return port
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

var (
	portsMu    sync.Mutex
	portsGiven = map[int]bool{}
)

// portRange is where FreePort picks: from 10000 up to the start of the ephemeral range.
func portRange() (lo, hi int) {
	lo, hi = 10000, 32768
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return lo, hi
	}
	f := strings.Fields(string(b))
	if len(f) == 2 {
		if start, err := strconv.Atoi(f[0]); err == nil && start > lo+1000 {
			hi = start
		}
	}
	return lo, hi
}

// SyncBuffer is a bytes.Buffer safe for concurrent writes and reads.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
