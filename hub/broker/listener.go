package broker

import (
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mochi-mqtt/server/v2/listeners"
)

// listener is the broker's TCP (or TLS) listener: what mochi's listeners.TCP does, plus the
// limits of a service exposed to a network:
//   - a socket must complete its TLS handshake, send CONNECT and be authenticated within
//     connectTimeout, or it is closed (mochi sets no deadline before CONNECT: an idle socket
//     stayed open for ever);
//   - at most maxPending sockets may be unauthenticated at once; one more is closed at accept;
//   - a connection that ends in an error is counted, not logged (mochi logs a warning for each,
//     which with the hook's own line made two lines per refused attempt).
type listener struct {
	id, address    string
	tlsConfig      *tls.Config
	connectTimeout time.Duration
	maxPending     int64
	m              *metrics
	log            *slog.Logger

	// closeClients, when set, replaces the close function mochi passes to Close (see
	// Broker.closeListenerClients: mochi's own can deadlock).
	closeClients func(listener string)

	mu      sync.Mutex
	ln      net.Listener
	end     atomic.Bool
	pending atomic.Int64
}

// pendingConn is an accepted socket; it counts as pending until authenticated or closed.
type pendingConn struct {
	net.Conn
	l    *listener
	once sync.Once
}

// authenticated takes the socket out of the pending count (once).
func (c *pendingConn) authenticated() {
	c.once.Do(func() { c.l.m.pending.Set(float64(c.l.pending.Add(-1))) })
}

// Close closes the socket and, if it was still pending, takes it out of the count.
func (c *pendingConn) Close() error {
	c.authenticated()
	return c.Conn.Close()
}

// ID returns the listener's id.
func (l *listener) ID() string { return l.id }

// Address returns the bound address once listening, else the configured one.
func (l *listener) Address() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ln != nil {
		return l.ln.Addr().String()
	}
	return l.address
}

// Protocol returns "tcp".
func (l *listener) Protocol() string { return "tcp" }

// Init binds the address.
func (l *listener) Init(*slog.Logger) error {
	var ln net.Listener
	var err error
	if l.tlsConfig != nil {
		ln, err = tls.Listen("tcp", l.address, l.tlsConfig)
	} else {
		ln, err = net.Listen("tcp", l.address)
	}
	if err != nil {
		return err
	}
	l.mu.Lock()
	l.ln = ln
	l.mu.Unlock()
	return nil
}

// Serve accepts connections until Close and hands each to establish on a goroutine of its own.
func (l *listener) Serve(establish listeners.EstablishFn) {
	for {
		conn, err := l.ln.Accept()
		if err != nil {
			if l.end.Load() {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() { // a transient accept error: go on
				time.Sleep(10 * time.Millisecond)
				continue
			}
			l.log.Warn("mqtt listener stopped", "listener", l.id, "err", err)
			return
		}
		if l.end.Load() {
			conn.Close()
			return
		}
		if n := l.pending.Add(1); l.maxPending > 0 && n > l.maxPending {
			l.pending.Add(-1)
			l.m.reject(reasonPendingCap)
			conn.Close()
			continue
		}
		l.m.pending.Set(float64(l.pending.Load()))
		pc := &pendingConn{Conn: conn, l: l}
		_ = conn.SetDeadline(time.Now().Add(l.connectTimeout)) // mochi replaces it after CONNECT
		go func() {
			err := establish(l.id, pc)
			switch {
			case err == nil:
			case errors.Is(err, os.ErrDeadlineExceeded):
				l.m.reject(reasonConnectTimeout)
			default:
				l.log.Debug("mqtt connection ended", "listener", l.id, "remote", conn.RemoteAddr().String(), "err", err)
			}
		}()
	}
}

// Close stops accepting and closes the listener's clients through closeClients.
func (l *listener) Close(closeClients listeners.CloseFn) {
	if l.end.CompareAndSwap(false, true) {
		l.mu.Lock()
		if l.ln != nil {
			l.ln.Close()
		}
		l.mu.Unlock()
		if l.closeClients != nil {
			closeClients = l.closeClients
		}
		closeClients(l.id)
	}
}
