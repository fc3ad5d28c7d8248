package store

import (
	"fmt"
	"net"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// newTransport returns the Raft transport cfg asks for: over cfg.StreamLayer, else plain TCP on
// cfg.RaftBind advertising adv, dialling through cfg.RaftDialVia when it is set.
func newTransport(cfg Config, adv net.Addr, hlog hclog.Logger) (*raft.NetworkTransport, error) {
	switch {
	case len(cfg.RaftDialVia) > 0:
		layer := cfg.StreamLayer
		if layer == nil {
			l, err := newTCPLayer(cfg.RaftBind, adv)
			if err != nil {
				return nil, fmt.Errorf("raft transport on %s: %w", cfg.RaftBind, err)
			}
			layer = l
		}
		return raft.NewNetworkTransportWithLogger(dialVia{StreamLayer: layer, via: cfg.RaftDialVia}, 3, 10*time.Second, hlog), nil
	case cfg.StreamLayer != nil:
		return raft.NewNetworkTransportWithLogger(cfg.StreamLayer, 3, 10*time.Second, hlog), nil
	default:
		t, err := raft.NewTCPTransportWithLogger(cfg.RaftBind, adv, 3, 10*time.Second, hlog)
		if err != nil {
			return nil, fmt.Errorf("raft transport on %s: %w", cfg.RaftBind, err)
		}
		return t, nil
	}
}

// dialVia is a raft.StreamLayer that dials some peers' Raft addresses through another address
// (Config.RaftDialVia): a proxy of this node's own per peer, so that a test harness can cut or
// slow one directed link between two nodes while both still reach the others, or an operator's
// tunnel. Everything else is the wrapped layer's.
type dialVia struct {
	raft.StreamLayer
	via map[string]string
}

func (d dialVia) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	if v, ok := d.via[string(addr)]; ok {
		addr = raft.ServerAddress(v)
	}
	return d.StreamLayer.Dial(addr, timeout)
}

// tcpLayer is a plain TCP raft.StreamLayer (raft's own TCPStreamLayer cannot be built outside
// its package with a listener of ours).
type tcpLayer struct {
	*net.TCPListener
	adv net.Addr
}

func newTCPLayer(bind string, adv net.Addr) (*tcpLayer, error) {
	l, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, err
	}
	t := &tcpLayer{TCPListener: l.(*net.TCPListener), adv: adv}
	if a, ok := t.Addr().(*net.TCPAddr); !ok || a.IP == nil || a.IP.IsUnspecified() {
		_ = l.Close()
		return nil, fmt.Errorf("%w: raft address %s is not advertisable (set an advertise address)", ErrConfig, t.Addr())
	}
	return t, nil
}

func (t *tcpLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return net.DialTimeout("tcp", string(addr), timeout)
}

func (t *tcpLayer) Addr() net.Addr {
	if t.adv != nil {
		return t.adv
	}
	return t.TCPListener.Addr()
}
