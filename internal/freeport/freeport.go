// Package freeport picks a loopback TCP port for a test that must know it before anything
// listens on it: a child process's command line (`driftline hub serve`, Mosquitto, the README's
// commands), a listener closed and opened again on the same port (a node restarted on its Raft
// address, a broker coming back), or an address where nothing listens. A test that listens
// itself listens on "127.0.0.1:0" and reads the address from the listener instead. Test code
// only; it imports nothing of the project, so agent-side and hub-side tests both use it.
package freeport

import (
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// Addr returns a loopback "127.0.0.1:PORT" that was free a moment ago (see Port).
func Addr(t testing.TB) string {
	t.Helper()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(Port(t)))
}

// Port returns a loopback TCP port that was free a moment ago. It picks at random below the
// kernel's ephemeral range (ip_local_port_range): a port taken from that range (":0") is released
// before the process binds it, and in that gap the kernel may hand it to any outgoing connection
// on the machine, which on a busy machine running many tests it does ("address already in use").
// A port is never handed out twice by one test binary.
func Port(t testing.TB) int {
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

// portRange is where Port picks: from 10000 up to the start of the ephemeral range.
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
