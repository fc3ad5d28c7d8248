package broker

import (
	"fmt"
	"os"
	"testing"
	"time"
)

// TestCloseWhileClientsDisconnect: the broker's Close must return while its clients are
// disconnecting on their own. mochi's closeListenerClients lists a listener's clients with
// Clients.GetByListener, which takes the clients' read lock and then takes it again (Len)
// inside: a client that disconnects in between asks for the write lock (Clients.Delete), the
// nested read lock waits behind it, and Close deadlocks with every later connection (the CI run
// of 2026-12-07 hung 20 minutes in TestClientMemory's cleanup: 300 sockets closed, then the
// broker). Each round closes its sockets and the broker at the same moment, so disconnects land
// while Close lists the clients; the old path hangs within a few rounds on a loaded machine.
func TestCloseWhileClientsDisconnect(t *testing.T) {
	const rounds, clients = 300, 100
	for r := range rounds {
		b := startBroker(t, Config{Limits: Limits{MaxPendingSockets: -1}})
		conns := make([]*bareClient, clients)
		for i := range conns {
			u := fmt.Sprintf("close-%02d-%03d", r, i)
			b.auth.mu.Lock()
			b.auth.users[u] = "tok-" + u
			b.auth.mu.Unlock()
			conns[i] = dialBare(t, b.Addr(), u, "tok-"+u, 0)
		}
		go func() {
			for _, c := range conns {
				c.conn.Close()
			}
		}()
		done := make(chan struct{})
		go func() { _ = b.Close(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			// Not t.Fatalf: the test's cleanup would call the stuck Close again and hang, so the
			// message goes to stderr first (the binary then ends at the test timeout).
			msg := fmt.Sprintf("round %d: Close did not return within 30 s while clients disconnected (deadlock)", r)
			fmt.Fprintln(os.Stderr, "FAIL TestCloseWhileClientsDisconnect:", msg)
			panic(msg)
		}
	}
}
