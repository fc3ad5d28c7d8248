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
// Nothing here makes a broker's delivery the hub's receipt: messages delivered before the
// handler's route exists, or accepted by a broker that then lost them, are gone; the agents'
// numbered reports are acknowledged from the replicated state instead (ackPublisher).
type PahoTransport struct {
	client paho.Client
	log    *slog.Logger
	group  string
	mu     sync.Mutex
	subs   map[string]paho.MessageHandler
}

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
		SetDefaultPublishHandler(func(paho.Client, paho.Message) {}).
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

func (t *PahoTransport) resubscribe(c paho.Client) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for f, h := range t.subs {
		// Not waited on: this runs on paho's connect goroutine.
		c.Subscribe(f, 1, h)
	}
}

// Publish sends one message and waits for the broker's acknowledgement (QoS 1) up to 10 s.
func (t *PahoTransport) Publish(topic string, payload []byte, retain bool, qos byte) error {
	tok := t.client.Publish(topic, qos, retain, payload)
	if !tok.WaitTimeout(10 * time.Second) {
		return fmt.Errorf("publish %s: timed out", topic)
	}
	return tok.Error()
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
func (t *PahoTransport) Close() { t.client.Disconnect(500) }
