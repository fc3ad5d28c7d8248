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

	pipesMu     sync.Mutex
	pipes       map[*trackedPipeline]struct{}
	pipesClosed bool
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

// closeHeartbeats returns once no heartbeat is being handled; none is handled after.
func (g *guardedTransport) closeHeartbeats() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
}

// AppendEntriesPipeline opens a pipeline the fence can close (closePipelines). After
// closePipelines it refuses with raft.ErrTransportShutdown.
func (g *guardedTransport) AppendEntriesPipeline(id raft.ServerID, target raft.ServerAddress) (raft.AppendPipeline, error) {
	p, err := g.NetworkTransport.AppendEntriesPipeline(id, target)
	if err != nil {
		return nil, err
	}
	tp := &trackedPipeline{AppendPipeline: p, g: g}
	g.pipesMu.Lock()
	defer g.pipesMu.Unlock()
	if g.pipesClosed {
		_ = p.Close()
		return nil, raft.ErrTransportShutdown
	}
	if g.pipes == nil {
		g.pipes = map[*trackedPipeline]struct{}{}
	}
	g.pipes[tp] = struct{}{}
	return tp, nil
}

// closePipelines closes every open pipeline, and every one opened later. hashicorp/raft's
// replication goroutine can block for good inside netPipeline.AppendEntries at shutdown: the
// pipeline's response reader waits to hand a response to raft's decoder, which has stopped,
// so the in-flight queue stays full, and the send's only other way out is the pipeline's own
// shutdown, which that same goroutine would close on return (reliability finding 16). Raft's
// Shutdown waits for that goroutine; closing the pipeline lets the send return.
func (g *guardedTransport) closePipelines() {
	g.pipesMu.Lock()
	g.pipesClosed = true
	pipes := g.pipes
	g.pipes = nil
	g.pipesMu.Unlock()
	for p := range pipes {
		_ = p.AppendPipeline.Close()
	}
}

// trackedPipeline is a pipeline guardedTransport can close at shutdown.
type trackedPipeline struct {
	raft.AppendPipeline
	g *guardedTransport
}

func (t *trackedPipeline) Close() error {
	t.g.pipesMu.Lock()
	delete(t.g.pipes, t)
	t.g.pipesMu.Unlock()
	return t.AppendPipeline.Close()
}
