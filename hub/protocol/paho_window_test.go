package protocol_test

import (
	"fmt"
	"io"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/driftline/driftline/hub/protocol"
	"github.com/driftline/driftline/internal/testhelp"
	"github.com/driftline/driftline/shared/wire"
)

// gatedProxy forwards TCP connections to a broker; while closed, nothing the broker sends
// reaches the client (its acknowledgements are held), while the client's messages go through.
type gatedProxy struct {
	l      net.Listener
	target string
	mu     sync.Mutex
	open   bool
	opened chan struct{}
}

func startGatedProxy(t *testing.T, target string) *gatedProxy {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &gatedProxy{l: l, target: target, open: true, opened: make(chan struct{})}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			t.Cleanup(func() { c.Close(); s.Close() })
			go func() { _, _ = io.Copy(s, c) }()
			go p.copyGated(c, s)
		}
	}()
	return p
}

func (p *gatedProxy) copyGated(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if err != nil {
			return
		}
		p.mu.Lock()
		open, opened := p.open, p.opened
		p.mu.Unlock()
		if !open {
			<-opened
		}
		if _, err := dst.Write(buf[:n]); err != nil {
			return
		}
	}
}

func (p *gatedProxy) setOpen(open bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if open && !p.open {
		close(p.opened)
	}
	if !open && p.open {
		p.opened = make(chan struct{})
	}
	p.open = open
}

// TestPahoPublishDoesNotWaitForEachAck: the external-broker transport's Publish hands a QoS 1
// message over and returns without waiting for the broker's PUBACK, so the hub's publishers
// (desired states, acks, chunk frames) send at the connection's rate, not one message per round
// trip (at 100,000 devices a wave's desired states took over ten minutes; issue 18). With the
// broker's answers held back, every Publish still returns at once and every message reaches a
// subscriber; once the answers flow, none is counted failed.
func TestPahoPublishDoesNotWaitForEachAck(t *testing.T) {
	const user, pass = "driftline-hub", "hub-secret"
	b := startHubMosquitto(t, "the publish window test", user, pass)
	bu, err := url.Parse(b.URL())
	if err != nil {
		t.Fatal(err)
	}
	proxy := startGatedProxy(t, bu.Host)
	u := url.URL{Scheme: "tcp", Host: proxy.l.Addr().String(), User: url.UserPassword(user, pass)}
	tr, err := protocol.DialPaho(protocol.PahoConfig{URLs: []string{u.String()}, ClientID: "window-pub", CleanSession: true})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()

	sub := paho.NewClient(paho.NewClientOptions().AddBroker(b.URL()).SetClientID("window-sub").SetUsername(user).SetPassword(pass))
	if tok := sub.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect subscriber: %v", tok.Error())
	}
	defer sub.Disconnect(100)
	var got atomic.Int64
	if tok := sub.Subscribe(wire.Default().AllDevices(wire.KindDesired), 1, func(paho.Client, paho.Message) { got.Add(1) }); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}

	const n = 50
	proxy.setOpen(false)
	var returned atomic.Int64
	errs := make(chan error, n)
	go func() {
		for i := range n {
			if err := tr.Publish(wire.Default().Desired(fmt.Sprintf("dev-%d", i)), []byte(`{"rev":1}`), true, 1); err != nil {
				errs <- err
			}
			returned.Add(1)
		}
	}()
	testhelp.WaitFor(t, 5*time.Second, "every Publish to return while the broker's acknowledgements are held", func() bool { return returned.Load() == n })
	select {
	case err := <-errs:
		t.Fatalf("publish: %v", err)
	default:
	}
	testhelp.WaitFor(t, 10*time.Second, "the subscriber to get every message", func() bool { return got.Load() == n })
	proxy.setOpen(true)
	tr.Close() // waits for the outstanding acknowledgements
	if f := tr.Failed(); f != 0 {
		t.Fatalf("%d publishes counted failed once the acknowledgements came", f)
	}
}
