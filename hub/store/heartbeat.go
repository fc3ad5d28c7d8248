package store

import (
	"sync"

	"github.com/hashicorp/raft"
)

// guardedTransport is the Raft transport with its heartbeat fast path fenced. hashicorp/raft
// handles a heartbeat on the transport's connection goroutine, outside the goroutines
// Raft.Shutdown waits for, so a heartbeat arriving while a node shuts down could run after the
// store returned and its database was closed; raft then panics saving the term ("Writes are
// blocked"). closeHeartbeats waits for the heartbeats being handled and answers later ones with
// raft.ErrRaftShutdown.
type guardedTransport struct {
	*raft.NetworkTransport
	mu     sync.RWMutex
	closed bool
	fenced func(rpc raft.RPC) // what the transport calls
}

// SetHeartbeatHandler installs cb behind the fence.
func (g *guardedTransport) SetHeartbeatHandler(cb func(rpc raft.RPC)) {
	if cb == nil {
		g.NetworkTransport.SetHeartbeatHandler(nil)
		return
	}
	g.fenced = func(rpc raft.RPC) {
		g.mu.RLock()
		defer g.mu.RUnlock()
		if g.closed {
			rpc.Respond(nil, raft.ErrRaftShutdown)
			return
		}
		cb(rpc)
	}
	g.NetworkTransport.SetHeartbeatHandler(g.fenced)
}

// handler returns the handler installed in the transport.
func (g *guardedTransport) handler() func(rpc raft.RPC) { return g.fenced }

// closeHeartbeats returns once no heartbeat is being handled; none is handled after.
func (g *guardedTransport) closeHeartbeats() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
}
