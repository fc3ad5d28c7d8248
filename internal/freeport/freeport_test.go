package freeport

import (
	"net"
	"testing"
)

// TestPortBelowEphemeralAndBindable: a port is below the kernel's ephemeral range, never handed
// out twice, and a listener can take it.
func TestPortBelowEphemeralAndBindable(t *testing.T) {
	lo, hi := portRange()
	seen := map[int]bool{}
	for range 50 {
		p := Port(t)
		if p < lo || p >= hi {
			t.Fatalf("port %d outside [%d, %d)", p, lo, hi)
		}
		if seen[p] {
			t.Fatalf("port %d handed out twice", p)
		}
		seen[p] = true
	}
	l, err := net.Listen("tcp", Addr(t))
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
}
