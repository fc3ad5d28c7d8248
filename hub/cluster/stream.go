package cluster

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// HandshakeTimeout bounds a Raft connection's TLS handshake; a socket that does not complete it
// in time is closed.
const HandshakeTimeout = 10 * time.Second

// StreamLayer is a raft.StreamLayer over mutual TLS: what raft.NewTCPTransport does over plain
// TCP, with every connection, accepted or dialled, authenticated by the cluster CA.
type StreamLayer struct {
	ln        net.Listener
	advertise net.Addr
	server    *tls.Config
	client    *tls.Config
}

// NewStreamLayer listens on bind. advertise is the address peers dial (nil: the bound one).
func NewStreamLayer(bind string, advertise net.Addr, t *TLS) (*StreamLayer, error) {
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, fmt.Errorf("raft listener %s: %w", bind, err)
	}
	if advertise == nil {
		advertise = ln.Addr()
	}
	if a, ok := advertise.(*net.TCPAddr); ok && a.IP.IsUnspecified() {
		ln.Close()
		return nil, fmt.Errorf("%w: raft advertise address %s is not dialable", ErrConfig, advertise)
	}
	return &StreamLayer{ln: ln, advertise: advertise, server: t.PeerServerConfig(), client: t.ClientConfig()}, nil
}

// Accept returns the next connection. Its TLS handshake runs on the connection's first read or
// write, on raft's goroutine for that connection, within HandshakeTimeout.
func (s *StreamLayer) Accept() (net.Conn, error) {
	c, err := s.ln.Accept()
	if err != nil {
		return nil, err
	}
	return &handshakeConn{Conn: tls.Server(c, s.server)}, nil
}

// Close stops listening.
func (s *StreamLayer) Close() error { return s.ln.Close() }

// Addr is the advertised address.
func (s *StreamLayer) Addr() net.Addr { return s.advertise }

// Dial connects to a peer and completes the handshake within timeout.
func (s *StreamLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: timeout}, Config: s.client}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return d.DialContext(ctx, "tcp", string(addr))
}

// handshakeConn completes the server handshake before the first read or write, with a deadline,
// so an idle or plain-text peer is dropped instead of holding raft's connection goroutine.
type handshakeConn struct {
	*tls.Conn
	once sync.Once
	err  error
}

func (c *handshakeConn) handshake() error {
	c.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), HandshakeTimeout)
		defer cancel()
		if c.err = c.Conn.HandshakeContext(ctx); c.err != nil {
			c.Conn.Close()
		}
	})
	return c.err
}

func (c *handshakeConn) Read(p []byte) (int, error) {
	if err := c.handshake(); err != nil {
		return 0, err
	}
	return c.Conn.Read(p)
}

func (c *handshakeConn) Write(p []byte) (int, error) {
	if err := c.handshake(); err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
}
