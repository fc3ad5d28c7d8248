package store

import (
	"errors"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/driftline/driftline/internal/testhelp"
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
	fenced := g.fenced // what the transport calls for a heartbeat
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

// TestClosePipelinesUnblocksSend reproduces reliability finding 16 at the transport: a pipeline to
// a peer that never answers, whose responses nobody consumes (raft's decoder stopped at
// shutdown), blocks its next send for good; closePipelines must let that send return, and a
// pipeline opened afterwards is refused.
func TestClosePipelinesUnblocksSend(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() { // the peer: reads everything, answers nothing
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(io.Discard, c); c.Close() }()
		}
	}()
	trans, err := raft.NewTCPTransport("127.0.0.1:0", nil, 2, 20*time.Millisecond, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer trans.Close()
	g := &guardedTransport{NetworkTransport: trans}
	p, err := g.AppendEntriesPipeline("peer", raft.ServerAddress(ln.Addr().String()))
	if err != nil {
		t.Fatal(err)
	}
	var sent atomic.Int64
	done := make(chan error, 1)
	go func() {
		for {
			if _, err := p.AppendEntries(&raft.AppendEntriesRequest{Term: 1}, &raft.AppendEntriesResponse{}); err != nil {
				done <- err
				return
			}
			sent.Add(1)
		}
	}()
	testhelp.WaitFor(t, 10*time.Second, "the first send", func() bool { return sent.Load() >= 1 })
	select {
	case err := <-done:
		t.Fatalf("the send returned (%v) before the pipeline was closed: the stall did not happen", err)
	case <-time.After(500 * time.Millisecond): // the next send is stuck (its response reader waits on raft)
	}
	g.closePipelines()
	select {
	case err := <-done:
		if !errors.Is(err, raft.ErrPipelineShutdown) {
			t.Fatalf("send after closePipelines: %v, want ErrPipelineShutdown", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the stuck send did not return after closePipelines: raft's shutdown would hang")
	}
	if _, err := g.AppendEntriesPipeline("peer", raft.ServerAddress(ln.Addr().String())); !errors.Is(err, raft.ErrTransportShutdown) {
		t.Fatalf("pipeline opened after closePipelines: %v", err)
	}
}
