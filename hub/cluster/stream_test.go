package cluster

import (
	"crypto/tls"
	"io"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/driftline/driftline/hub/cluster/clustertest"
)

// voteTo sends a RequestVote RPC over trans to addr and returns the error (nil: the peer answered).
func voteTo(trans raft.Transport, addr string) error {
	var resp raft.RequestVoteResponse
	return trans.RequestVote("attacker", raft.ServerAddress(addr), &raft.RequestVoteRequest{
		RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("attacker"), Addr: []byte("127.0.0.1:1")},
		Term:      0,
	}, &resp)
}

// serveRaft runs a raft transport on layer that answers every RPC with an empty response.
func serveRaft(t *testing.T, layer raft.StreamLayer) *raft.NetworkTransport {
	t.Helper()
	trans := raft.NewNetworkTransport(layer, 1, 2*time.Second, io.Discard)
	t.Cleanup(func() { trans.Close() })
	go func() {
		for rpc := range trans.Consumer() {
			rpc.Respond(&raft.RequestVoteResponse{}, nil)
		}
	}()
	return trans
}

func TestStreamLayerMutualTLS(t *testing.T) {
	dir := t.TempDir()
	ca := clustertest.NewCA(t, dir, "cluster")
	foreign := clustertest.NewCA(t, dir, "foreign")
	load := func(ca *clustertest.CA, caFile, name string) *TLS {
		cert, key := ca.Issue(t, name)
		tl, err := LoadTLS(caFile, cert, key)
		if err != nil {
			t.Fatal(err)
		}
		return tl
	}
	server := load(ca, ca.CertFile, "n1")
	layer, err := NewStreamLayer("127.0.0.1:0", nil, server)
	if err != nil {
		t.Fatal(err)
	}
	serveRaft(t, layer)
	addr := layer.Addr().String()

	// A peer with a certificate from the cluster CA gets an answer.
	peerLayer, err := NewStreamLayer("127.0.0.1:0", nil, load(ca, ca.CertFile, "n2"))
	if err != nil {
		t.Fatal(err)
	}
	peer := raft.NewNetworkTransport(peerLayer, 1, 2*time.Second, io.Discard)
	defer peer.Close()
	if err := voteTo(peer, addr); err != nil {
		t.Fatalf("a cluster peer was refused: %v", err)
	}

	// A plain TCP raft client gets nothing.
	plain, err := raft.NewTCPTransport("127.0.0.1:0", nil, 1, 2*time.Second, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if err := voteTo(plain, addr); err == nil {
		t.Fatal("a plain TCP client's RequestVote was answered")
	}

	// A client with a certificate from another CA (trusting ours) cannot complete a handshake.
	foreignTLS := load(foreign, foreign.CertFile, "intruder")
	cfg := foreignTLS.ClientConfig()
	cfg.VerifyConnection = nil // the intruder trusts anything; only the server's check matters
	conn, err := tls.Dial("tcp", addr, cfg)
	if err == nil {
		_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, err = conn.Read(make([]byte, 1)) // TLS 1.3: the server's refusal arrives on the first read
		conn.Close()
	}
	if err == nil || isTimeout(err) {
		t.Fatalf("a client with a foreign certificate completed a connection: %v", err)
	}
	t.Logf("foreign certificate refused: %v", err)

	// A client without any certificate likewise.
	conn, err = tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err == nil {
		_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, err = conn.Read(make([]byte, 1))
		conn.Close()
	}
	if err == nil || isTimeout(err) {
		t.Fatalf("a client without a certificate completed a connection: %v", err)
	}

	// A node certificate the CA did not sign is refused at load.
	cert, key := foreign.Issue(t, "wrong")
	if _, err := LoadTLS(ca.CertFile, cert, key); err == nil {
		t.Fatal("LoadTLS accepted a node certificate from another CA")
	}
}

// TestIdleRaftSocketClosed: a socket that never starts its handshake is closed.
func TestIdleRaftSocketClosed(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for the handshake timeout")
	}
	dir := t.TempDir()
	ca := clustertest.NewCA(t, dir, "cluster")
	cert, key := ca.Issue(t, "n1")
	tl, err := LoadTLS(ca.CertFile, cert, key)
	if err != nil {
		t.Fatal(err)
	}
	layer, err := NewStreamLayer("127.0.0.1:0", nil, tl)
	if err != nil {
		t.Fatal(err)
	}
	serveRaft(t, layer)
	c, err := net.Dial("tcp", layer.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(HandshakeTimeout + 5*time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("idle socket: %v, want closed", err)
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
