package protocol

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// PahoConfig configures the hub's client of an external broker.
type PahoConfig struct {
	// URLs are broker URLs (tcp://, ssl://), tried in order; user:password in the first URL's
	// userinfo are the hub's credentials (the Mosquitto password file's hub user).
	URLs []string
	// ClientID names the hub node's session on the broker: stable per node (the session, with its
	// subscriptions and the QoS 1 messages queued for it, outlives disconnects), unique per node.
	ClientID string
	// SharedGroup is the shared-subscription group ($share/GROUP/...) of SubscribeShared; default
	// "driftline-hub". Every node of one hub cluster uses the same group, so a device message is
	// handled by one of them.
	SharedGroup string
	// CleanSession makes the broker forget the session on disconnect (tests; never in production:
	// the device messages sent while the hub was away would be dropped).
	CleanSession bool
	// CAFile, when set, is the CA bundle that signs the brokers' certificates.
	CAFile string
	Logger *slog.Logger
}

// PahoTransport is a Transport over an external broker, on a persistent session: the broker
// keeps the node's subscriptions and queues QoS 1 messages for it while it is disconnected
// (PITFALLS: a clean session drops what devices send before the hub is back). Subscriptions are
// made again on every (re)connect anyway, since a broker that lost its state (restarted without
// persistence, or killed before saving it) answers with no session. Handlers run one at a time
// on paho's router, in the order the broker delivered the messages.
//
// A resumed session delivers what the broker queued right after the CONNACK, before the service
// has subscribed (and so before paho has a route for it): such messages are held (up to
// maxEarly) and handed to the handler of the first subscription that matches them, before any
// later message, so none is acknowledged unhandled.
//
// Nothing here makes a broker's delivery the hub's receipt: a broker can accept a message and
// lose it; the agents' numbered reports are acknowledged from the replicated state instead
// (ackPublisher).
type PahoTransport struct {
	client paho.Client
	log    *slog.Logger
	group  string
	mu     sync.Mutex
	subs   map[string]paho.MessageHandler
	early  []paho.Message
	// window bounds the published messages awaiting the broker's acknowledgement; failed
	// counts those never acknowledged.
	window pubWindow
	failed atomic.Uint64
}

// maxEarly bounds the messages held for a subscription not made yet.
const maxEarly = 16384

// DialPaho connects to the external broker, waiting up to 30 s for the first connection.
func DialPaho(cfg PahoConfig) (*PahoTransport, error) {
	if len(cfg.URLs) == 0 {
		return nil, errors.New("protocol: no broker URL")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.SharedGroup == "" {
		cfg.SharedGroup = "driftline-hub"
	}
	if strings.ContainsAny(cfg.SharedGroup, "/+#") {
		return nil, fmt.Errorf("protocol: shared group %q: no '/', '+' or '#'", cfg.SharedGroup)
	}
	if cfg.ClientID == "" && !cfg.CleanSession {
		return nil, errors.New("protocol: a persistent session needs a client id")
	}
	t := &PahoTransport{log: cfg.Logger, group: cfg.SharedGroup, subs: map[string]paho.MessageHandler{}}
	opts := paho.NewClientOptions()
	for i, raw := range cfg.URLs {
		u, err := url.Parse(strings.TrimSpace(raw))
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("protocol: broker URL %q: want tcp://HOST:PORT or ssl://HOST:PORT", raw)
		}
		if i == 0 && u.User != nil {
			opts.SetUsername(u.User.Username())
			if pw, ok := u.User.Password(); ok {
				opts.SetPassword(pw)
			}
		}
		u.User = nil
		opts.AddBroker(u.String())
	}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("protocol: CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("protocol: CA file %s has no certificate", cfg.CAFile)
		}
		opts.SetTLSConfig(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})
	}
	opts.SetClientID(cfg.ClientID).
		SetCleanSession(cfg.CleanSession).
		SetResumeSubs(true).
		SetAutoReconnect(true).
		SetConnectRetry(true).
		SetConnectRetryInterval(time.Second).
		SetMaxReconnectInterval(10 * time.Second).
		// In order: the handlers never block (Transport), and the hub keeps the last report
		// a device sent, so one handled before an earlier one would stick. With false, paho
		// runs each message's handler on a goroutine of its own.
		SetOrderMatters(true).
		SetDefaultPublishHandler(t.unrouted).
		SetOnConnectHandler(t.resubscribe).
		SetConnectionLostHandler(func(_ paho.Client, err error) { t.log.Warn("external broker connection lost", "err", err) })
	t.client = paho.NewClient(opts)
	tok := t.client.Connect()
	if !tok.WaitTimeout(30 * time.Second) {
		t.client.Disconnect(0)
		return nil, fmt.Errorf("protocol: connect to %v: timed out", cfg.URLs)
	}
	if err := tok.Error(); err != nil {
		return nil, fmt.Errorf("protocol: connect to %v: %w", cfg.URLs, err)
	}
	return t, nil
}

// unrouted gets the messages paho has no route for: those of a subscription the service has
// not made yet on this connection (a resumed session), or, racing with Subscribe, one made
// just now.
func (t *PahoTransport) unrouted(c paho.Client, m paho.Message) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for f, h := range t.subs {
		if filterMatches(f, m.Topic()) {
			h(c, m)
			return
		}
	}
	if len(t.early) >= maxEarly {
		t.log.Warn("message for no subscription dropped", "topic", m.Topic())
		return
	}
	t.early = append(t.early, m)
}

// filterMatches reports whether an MQTT filter (with + and #, and a $share/GROUP/ prefix)
// matches topic.
func filterMatches(filter, topic string) bool {
	if rest, ok := strings.CutPrefix(filter, "$share/"); ok {
		_, filter, _ = strings.Cut(rest, "/")
	}
	f, tp := strings.Split(filter, "/"), strings.Split(topic, "/")
	for i, level := range f {
		if level == "#" {
			return true
		}
		if i >= len(tp) || (level != "+" && level != tp[i]) {
			return false
		}
	}
	return len(f) == len(tp)
}

func (t *PahoTransport) resubscribe(c paho.Client) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for f, h := range t.subs {
		// Not waited on: this runs on paho's connect goroutine.
		c.Subscribe(f, 1, h)
	}
}

// Publish hands one message to the broker connection and returns without waiting for the
// broker's acknowledgement: a publisher waiting a round trip per message (as this did) sends one
// desired state, ack or chunk frame per round trip, some 140 a second on a loaded machine, so a
// wave of 90,000 desired states took over ten minutes (issue 18, firmware-sim/loadgen). At most
// maxPendingWeight of messages (payload plus pendingOverhead each) await their
// acknowledgement at once; beyond that Publish waits up to publishTimeout for room, and returns
// an error when there is none, or when paho refuses the message at once (not connected). A
// message that fails later is logged and counted (Failed): every publisher of the service has a
// repair for a lost message (the desired repair pass, the agents' fetch and report retries).
func (t *PahoTransport) Publish(topic string, payload []byte, retain bool, qos byte) error {
	w := len(payload) + pendingOverhead
	if !t.window.acquire(w, publishTimeout) {
		return fmt.Errorf("publish %s: timed out waiting for the broker to acknowledge earlier messages", topic)
	}
	tok := t.client.Publish(topic, qos, retain, payload)
	select {
	case <-tok.Done(): // refused at once, or QoS 0 written already
		t.window.release(w)
		return tok.Error()
	default:
	}
	go func() {
		defer t.window.release(w)
		var err error
		if !tok.WaitTimeout(publishTimeout) {
			err = errors.New("no acknowledgement within " + publishTimeout.String())
		} else {
			err = tok.Error()
		}
		if err != nil {
			t.failed.Add(1)
			t.log.Warn("publish to the external broker failed after it was sent", "topic", topic, "err", err)
		}
	}()
	return nil
}

// Failed counts the messages Publish handed over that the broker did not acknowledge.
func (t *PahoTransport) Failed() uint64 { return t.failed.Load() }

// Publish's window: pendingOverhead is what each message counts beyond its payload (so many
// small messages are bounded too: at most 16,384 of them), maxPendingWeight the most awaiting
// an acknowledgement, publishTimeout how long a message may wait for room or for its
// acknowledgement.
const (
	pendingOverhead  = 1024
	maxPendingWeight = 16 << 20
	publishTimeout   = 10 * time.Second
)

// pubWindow bounds the weight of messages awaiting their acknowledgement.
type pubWindow struct {
	mu    sync.Mutex
	used  int
	freed chan struct{} // closed (and replaced) at every release
}

// acquire takes n of the window, waiting up to timeout for room; a message heavier than the
// whole window is let through alone.
func (w *pubWindow) acquire(n int, timeout time.Duration) bool {
	var deadline *time.Timer
	for {
		w.mu.Lock()
		if w.freed == nil {
			w.freed = make(chan struct{})
		}
		if w.used == 0 || w.used+n <= maxPendingWeight {
			w.used += n
			w.mu.Unlock()
			if deadline != nil {
				deadline.Stop()
			}
			return true
		}
		ch := w.freed
		w.mu.Unlock()
		if deadline == nil {
			deadline = time.NewTimer(timeout)
		}
		select {
		case <-ch:
		case <-deadline.C:
			return false
		}
	}
}

func (w *pubWindow) release(n int) {
	w.mu.Lock()
	w.used -= n
	if w.freed != nil {
		close(w.freed)
	}
	w.freed = make(chan struct{})
	w.mu.Unlock()
}

// drain waits up to timeout until nothing awaits an acknowledgement.
func (w *pubWindow) drain(timeout time.Duration) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		w.mu.Lock()
		if w.freed == nil {
			w.freed = make(chan struct{})
		}
		used, ch := w.used, w.freed
		w.mu.Unlock()
		if used == 0 {
			return
		}
		select {
		case <-ch:
		case <-deadline.C:
			return
		}
	}
}

// SubscribeShared subscribes filter in the transport's shared-subscription group: the broker
// hands each matching message to one subscriber of the group (one hub node), not to each.
func (t *PahoTransport) SubscribeShared(filter string, handler func(topic string, payload []byte)) error {
	return t.Subscribe("$share/"+t.group+"/"+filter, handler)
}

// Subscribe routes messages matching filter to handler, and checks the broker granted it.
func (t *PahoTransport) Subscribe(filter string, handler func(topic string, payload []byte)) error {
	h := func(_ paho.Client, m paho.Message) { handler(m.Topic(), m.Payload()) }
	t.mu.Lock()
	t.subs[filter] = h
	// Held messages first, in the order they came, then the route (a message that meanwhile
	// reaches unrouted waits for the lock and finds the handler in subs).
	kept := t.early[:0]
	for _, m := range t.early {
		if filterMatches(filter, m.Topic()) {
			h(t.client, m)
		} else {
			kept = append(kept, m)
		}
	}
	clear(t.early[len(kept):])
	t.early = kept
	t.mu.Unlock()
	tok := t.client.Subscribe(filter, 1, h)
	if !tok.WaitTimeout(10 * time.Second) {
		return fmt.Errorf("subscribe %s: timed out", filter)
	}
	if err := tok.Error(); err != nil {
		return err
	}
	if st, ok := tok.(*paho.SubscribeToken); ok && st.Result()[filter] >= 0x80 {
		return fmt.Errorf("subscribe %s: refused by the broker", filter)
	}
	return nil
}

// Close disconnects; the broker keeps the session (and queues for it) until the node is back.
func (t *PahoTransport) Close() {
	t.window.drain(2 * time.Second) // what was handed over gets its chance to be acknowledged
	t.client.Disconnect(500)
}
