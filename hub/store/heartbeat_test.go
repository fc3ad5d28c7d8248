package store

import (
	"errors"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// TestHeartbeatFence: closeHeartbeats waits for a heartbeat being handled, and a heartbeat after
// it never reaches raft (it would write the term to a closed database).
func TestHeartbeatFence(t *testing.T) {
	trans, err := raft.NewTCPTransport("127.0.0.1:0", nil, 1, time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer trans.Close()
	g := &guardedTransport{NetworkTransport: trans}
	entered, release := make(chan struct{}), make(chan struct{})
	calls := 0
	g.SetHeartbeatHandler(func(rpc raft.RPC) {
		calls++
		close(entered)
		<-release
		rpc.Respond(nil, nil)
	})
	fenced := g.handler() // what the transport calls for a heartbeat
	resp := make(chan raft.RPCResponse, 2)
	go fenced(raft.RPC{RespChan: resp})
	<-entered
	closed := make(chan struct{})
	go func() { g.closeHeartbeats(); close(closed) }()
	select {
	case <-closed:
		t.Fatal("closeHeartbeats returned while a heartbeat was being handled")
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	<-closed
	fenced(raft.RPC{RespChan: resp})
	if calls != 1 {
		t.Fatalf("raft's handler called %d times, want 1 (none after the fence)", calls)
	}
	<-resp
	if r := <-resp; !errors.Is(r.Error, raft.ErrRaftShutdown) {
		t.Fatalf("a heartbeat after the fence answered %v, want ErrRaftShutdown", r.Error)
	}
}
