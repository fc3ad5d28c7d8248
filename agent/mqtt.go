package agent

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"

	"github.com/driftline/driftline/agent/config"
	"github.com/driftline/driftline/agent/msgq"
	"github.com/driftline/driftline/agent/outbox"
	"github.com/driftline/driftline/agent/reconcile"
	"github.com/driftline/driftline/shared/wire"
)

// Queue bounds between paho's handler and the agent's goroutines. The handler never blocks: a
// full queue drops the message and counts it (ReasonQueueFull); the pull's timeout asks again.
// The queues (msgq) hold memory for what they hold, not for their bound.
const (
	frameQueue = 1024
	dataQueue  = 1024
)

// conn is the agent's MQTT connection. Paho's handler only sorts incoming messages into the
// agent's own queues (PITFALLS: never block or wait on a token inside a handler); every wait
// happens on the agent's goroutines.
type conn struct {
	client paho.Client
	topics wire.Topics
	id     string
	log    *slog.Logger
	m      *metrics

	// gen changes on every connect and every loss, so a publish can tell that the connection it
	// was made on is gone.
	gen       atomic.Uint64
	up        atomic.Bool
	lostMu    sync.Mutex
	lost      chan struct{} // closed (and replaced) when the connection drops
	upCh      chan struct{} // closed while the connection is up (replaced when it drops); under lostMu
	upClosed  bool
	connected chan struct{} // 1-slot: a (re)connect happened

	// acks holds the hub's latest acknowledgement of numbered reports (older ones are implied).
	acks chan []byte

	desiredMu sync.Mutex
	desired   []byte        // latest desired payload, nil once taken
	desiredCh chan struct{} // 1-slot: desired holds something new
	// acceptDesired, when set, decides whether an incoming desired payload is worth acting on
	// (Agent.acceptDesired); it runs on the MQTT client's goroutine.
	acceptDesired func([]byte) bool

	frames *msgq.Queue
	// sharedFrames gets the frames of the model chunk topic a pull listens on (sharedTopic,
	// nil when none): the hub publishes there once for every device pulling the model.
	sharedFrames *msgq.Queue
	sharedTopic  atomic.Pointer[string]
	data         *msgq.Queue
	wantData     bool // an extension provides EventData (AddExtension, before Run)
	// extra are the extensions' subscriptions (Agent.OnMessage): topic -> handler, set before
	// Run and read-only afterwards.
	extra map[string]func([]byte)
	// onFrameBytes counts every chunk-topic byte received.
	onFrameBytes func(n int)

	// token is the MQTT password, read at every connect (SetToken replaces it); kick (1-slot)
	// cuts the wait before the next connect attempt short.
	token atomic.Pointer[string]
	kick  chan struct{}
	pace  pacing
	// onRefused, when set, is called (on the connect loop's goroutine) after every refused
	// CONNECT.
	onRefused func(Refusal)

	stMu     sync.Mutex
	st       ConnStatus
	tryingAt string // the broker of the attempt in progress (paho's notifications)
}

func newConn(cfg config.Config, topics wire.Topics, m *metrics, log *slog.Logger, started time.Time, version string, pace pacing) (*conn, error) {
	c := &conn{
		topics: topics, id: cfg.DeviceID, log: log, m: m,
		connected: make(chan struct{}, 1), desiredCh: make(chan struct{}, 1), lost: make(chan struct{}), upCh: make(chan struct{}), acks: make(chan []byte, 1),
		frames: msgq.New(frameQueue), sharedFrames: msgq.New(frameQueue), data: msgq.New(dataQueue),
		kick: make(chan struct{}, 1), pace: pace,
	}
	tok := cfg.Token
	c.token.Store(&tok)
	will, err := wire.Encode(wire.Status{Header: wire.Header{DeviceID: cfg.DeviceID, TS: started.UnixMilli()},
		Online: false, AgentVersion: version, StartedTS: started.UnixMilli(), Reason: wire.ReasonWill})
	if err != nil {
		return nil, fmt.Errorf("encode will: %w", err)
	}
	opts := paho.NewClientOptions()
	for _, b := range cfg.Brokers {
		opts.AddBroker(b)
	}
	if tc, err := tlsConfig(cfg.TLS); err != nil {
		return nil, err
	} else if tc != nil {
		opts.SetTLSConfig(tc)
	}
	// The agent's own loop (conn.run) connects and reconnects, not paho's: paho retries a
	// CONNECT the broker refused (bad token, not authorised) at the pace of a network error,
	// forever (PITFALLS: agents and refused credentials). MQTT 3.1.1 is set explicitly, so a
	// refusal is not tried a second time as MQTT 3.1 (which would also hide its return code).
	opts.SetClientID(cfg.DeviceID).
		SetCredentialsProvider(func() (string, string) { return cfg.DeviceID, *c.token.Load() }).
		SetProtocolVersion(4).
		SetCleanSession(true).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetConnectTimeout(10*time.Second).
		SetKeepAlive(keepAlive).
		// paho drops a connection whose PINGRESP is late by PingTimeout (10 s by default), and
		// the broker queues the PINGRESP behind what it is sending the device: a wave's shared
		// publish (a model's chunks to every listener at once) over a slow link, or to agents
		// of a busy fleet process, took longer than that and cut healthy connections (1,872
		// in a 10,000-agent rollout), which then lost their shared subscription.
		SetPingTimeout(keepAlive).
		SetWriteTimeout(10*time.Second).
		SetOrderMatters(true).
		SetStore(noStore{}).
		SetBinaryWill(topics.Status(cfg.DeviceID), will, 1, true).
		SetDefaultPublishHandler(c.route).
		SetOnConnectHandler(c.onConnect).
		SetConnectionLostHandler(c.onLost).
		SetConnectionNotificationHandler(c.onNotification)
	c.client = paho.NewClient(opts)
	return c, nil
}

// keepAlive is the MQTT keep-alive, and how long a PINGRESP may take.
const keepAlive = 30 * time.Second

// noStore is paho's message store keeping nothing. With a clean session the broker forgets
// unacknowledged messages anyway, and the agent's own outbox resends what was not acknowledged
// (PITFALLS: paho); paho's resend of its stored publishes after a reconnect would only send
// duplicates, and races with its own writer (a data race the race detector reports in
// client.resume, paho v1.5.1).
type noStore struct{}

func (noStore) Open()                             {}
func (noStore) Put(string, packets.ControlPacket) {}
func (noStore) Get(string) packets.ControlPacket  { return nil }
func (noStore) All() []string                     { return nil }
func (noStore) Del(string)                        {}
func (noStore) Close()                            {}
func (noStore) Reset()                            {}

// tlsConfig builds the client TLS settings; nil when nothing is configured (paho then uses the
// system pool for ssl:// URLs).
func tlsConfig(t config.TLS) (*tls.Config, error) {
	if t == (config.TLS{}) {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: t.InsecureSkipVerify} // #nosec G402 -- opt-in, for tests
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("tls.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls.ca_file %s: no PEM certificate", t.CAFile)
		}
		tc.RootCAs = pool
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("tls client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// onConnect runs on paho's goroutine after every (re)connect: with a clean session nothing is
// subscribed any more, so subscribe again, without waiting on the tokens here.
func (c *conn) onConnect(cl paho.Client) {
	c.gen.Add(1)
	c.up.Store(true)
	c.lostMu.Lock()
	if !c.upClosed {
		close(c.upCh)
		c.upClosed = true
	}
	c.lostMu.Unlock()
	c.m.connected.Set(1)
	c.m.connects.Inc()
	subs := map[string]byte{c.topics.Desired(c.id): 1, c.topics.Chunk(c.id): 1, c.topics.Ack(c.id): 1}
	if c.wantData {
		subs[c.topics.Data(c.id)] = 1
	}
	for topic := range c.extra {
		subs[topic] = 1
	}
	tok := cl.SubscribeMultiple(subs, nil)
	go func() {
		if !tok.WaitTimeout(30 * time.Second) {
			c.log.Warn("subscribe not acknowledged")
			return
		}
		if err := tok.Error(); err != nil {
			c.log.Warn("subscribe failed", "err", err)
			return
		}
		if st, ok := tok.(*paho.SubscribeToken); ok {
			for f, code := range st.Result() {
				if code >= 0x80 {
					c.log.Error("broker refused a subscription", "filter", f)
				}
			}
		}
	}()
	c.stMu.Lock()
	broker := c.tryingAt
	c.st = ConnStatus{Connected: true, Broker: broker, Since: time.Now()}
	c.stMu.Unlock()
	c.m.backoff.Set(0)
	c.log.Info("connected to broker", "broker", broker)
	select {
	case c.connected <- struct{}{}:
	default:
	}
}

func (c *conn) onLost(_ paho.Client, err error) {
	c.gen.Add(1)
	c.up.Store(false)
	c.lostMu.Lock()
	close(c.lost)
	c.lost = make(chan struct{})
	if c.upClosed {
		c.upCh = make(chan struct{})
		c.upClosed = false
	}
	c.lostMu.Unlock()
	c.m.connected.Set(0)
	c.stMu.Lock()
	c.st = ConnStatus{Broker: c.st.Broker, Since: time.Now(), Error: fmt.Sprint(err)}
	c.stMu.Unlock()
	c.log.Warn("broker connection lost", "err", err)
}

// onNotification records which broker paho is trying (for the logs and the status).
func (c *conn) onNotification(_ paho.Client, n paho.ConnectionNotification) {
	if b, ok := n.(paho.ConnectionNotificationBroker); ok && b.Broker != nil {
		c.stMu.Lock()
		c.tryingAt = b.Broker.String()
		c.stMu.Unlock()
	}
}

// route sorts one incoming message into the agent's queues. It never blocks.
func (c *conn) route(_ paho.Client, msg paho.Message) {
	p := msg.Payload()
	switch msg.Topic() {
	case c.topics.Chunk(c.id):
		c.queueFrame(c.frames, p)
	case c.topics.Desired(c.id):
		// Only a desired state the agent would act on takes the slot: a forged, replayed or
		// expired one must not push a real one out before the reconciler reads it.
		if c.acceptDesired != nil && !c.acceptDesired(p) {
			return
		}
		// Desired replaces the previous one whole: keep only the latest.
		c.desiredMu.Lock()
		c.desired = p
		c.desiredMu.Unlock()
		select {
		case c.desiredCh <- struct{}{}:
		default:
		}
	case c.topics.Ack(c.id):
		// Keep the latest: an ack covers everything before it.
		for {
			select {
			case c.acks <- p:
				return
			default:
			}
			select {
			case <-c.acks:
			default:
			}
		}
	case c.topics.Data(c.id):
		if !c.wantData {
			return
		}
		if !c.data.Push(p) {
			c.m.rejected.WithLabelValues(ReasonQueueFull).Inc()
		}
	default:
		if t := c.sharedTopic.Load(); t != nil && msg.Topic() == *t {
			c.queueFrame(c.sharedFrames, p)
			return
		}
		if f := c.extra[msg.Topic()]; f != nil {
			f(p)
			return
		}
		if c.lateShared(msg.Topic()) {
			// A frame of a shared chunk topic the pull has left: the broker had queued it
			// before the unsubscribe. Expected after every shared pull (a wave's publish
			// reaches a listener in one burst), so counted apart and not logged.
			c.m.rejected.WithLabelValues(ReasonLateSharedFrame).Inc()
			return
		}
		c.m.rejected.WithLabelValues(ReasonForeignMessage).Inc()
		c.log.Warn("message on an unexpected topic", "topic", msg.Topic())
	}
}

// lateShared reports whether topic is a model's shared chunk topic (PREFIX/model/NAME/chunk).
func (c *conn) lateShared(topic string) bool {
	rest, ok := strings.CutPrefix(topic, c.topics.Prefix()+"/model/")
	if !ok {
		return false
	}
	name, ok := strings.CutSuffix(rest, "/chunk")
	return ok && name != "" && !strings.Contains(name, "/")
}

// queueFrame counts a chunk frame's bytes and queues it on ch (the device's or the shared chunk
// topic's queue); a full queue drops it, counted.
func (c *conn) queueFrame(q *msgq.Queue, p []byte) {
	if c.onFrameBytes != nil {
		c.onFrameBytes(len(p))
	}
	if !q.Push(p) {
		c.m.rejected.WithLabelValues(ReasonQueueFull).Inc()
	}
}

var _ reconcile.Conn = (*conn)(nil)

// sharedSubscribeTimeout bounds the wait for the broker's SUBACK of a shared chunk topic.
const sharedSubscribeTimeout = 10 * time.Second

// SubscribeShared subscribes to model's shared chunk topic and returns the subscription once
// the broker granted it, or nil (not connected, refused by the broker's ACL, no answer): the
// pull then asks for every chunk on the device's own topic, as agents before it did.
func (c *conn) SubscribeShared(ctx context.Context, model string) *reconcile.SharedSub {
	if !c.up.Load() {
		return nil
	}
	gen := c.gen.Load()
	topic := c.topics.ModelChunk(model)
	c.sharedTopic.Store(&topic)
	tok := c.client.Subscribe(topic, 1, nil)
	select {
	case <-tok.Done():
	case <-ctx.Done():
	case <-time.After(sharedSubscribeTimeout):
	}
	refused := func(why string, err error) *reconcile.SharedSub {
		c.log.Info("shared chunk topic not used", "topic", topic, "why", why, "err", err)
		c.UnsubscribeShared(&reconcile.SharedSub{Topic: topic})
		return nil
	}
	select {
	case <-tok.Done():
	default:
		return refused("no answer", nil)
	}
	if err := tok.Error(); err != nil {
		return refused("subscribe failed", err)
	}
	if st, ok := tok.(*paho.SubscribeToken); ok {
		if code, ok := st.Result()[topic]; !ok || code >= 0x80 {
			return refused("broker refused the subscription", nil)
		}
	}
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return &reconcile.SharedSub{Model: model, Topic: topic, ID: hex.EncodeToString(b), Gen: gen}
}

// UnsubscribeShared ends a shared subscription (nil: none) and drops its queued frames.
func (c *conn) UnsubscribeShared(s *reconcile.SharedSub) {
	if s == nil {
		return
	}
	c.sharedTopic.Store(nil)
	if c.up.Load() {
		c.client.Unsubscribe(s.Topic) // not waited for: a late frame is dropped by route
	}
	c.sharedFrames.Drain()
}

// SharedFrames carries the messages of the shared chunk topic subscribed to.
func (c *conn) SharedFrames() *msgq.Queue { return c.sharedFrames }

// DesiredSignal holds a value while a desired payload waits (reconcile.Conn).
func (c *conn) DesiredSignal() chan struct{} { return c.desiredCh }

// Frames carries the chunk topic's messages (reconcile.Conn).
func (c *conn) Frames() *msgq.Queue { return c.frames }

// Gen changes on every connect and loss (reconcile.Conn).
func (c *conn) Gen() uint64 { return c.gen.Load() }

// Up reports whether the connection is up (reconcile.Conn).
func (c *conn) Up() bool { return c.up.Load() }

// PeekDesired returns the latest desired payload without taking it.
func (c *conn) PeekDesired() []byte {
	c.desiredMu.Lock()
	defer c.desiredMu.Unlock()
	return c.desired
}

// TakeDesired returns the latest desired payload and forgets it.
func (c *conn) TakeDesired() []byte {
	c.desiredMu.Lock()
	defer c.desiredMu.Unlock()
	b := c.desired
	c.desired = nil
	return b
}

// Send hands one message to the client without waiting for the broker's acknowledgement: for
// requests whose answer is the confirmation (fetch requests, asked again at their deadline).
// Waiting for a PUBACK that queues behind megabytes of chunk frames on the same connection
// would stall the pull's loop while its workers starve.
func (c *conn) Send(topic string, payload []byte, qos byte) error {
	if !c.up.Load() || !c.client.IsConnectionOpen() {
		return ErrNotConnected
	}
	c.client.Publish(topic, qos, false, payload)
	return nil
}

var _ outbox.Connection = (*conn)(nil)

// WaitConnected returns nil once the connection is up, or ctx.Err(). It implements
// outbox.Connection: the outbox waits here while the connection is down (refused, unreachable)
// instead of failing a publish every few seconds.
func (c *conn) WaitConnected(ctx context.Context) error {
	c.lostMu.Lock()
	up := c.upCh
	c.lostMu.Unlock()
	select {
	case <-up:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Connected reports whether the connection is up now (outbox.Connection).
func (c *conn) Connected() bool { return c.up.Load() && c.client.IsConnectionOpen() }

// Publish sends one message and returns nil only once the broker acknowledged it (QoS 1) or
// it was written (QoS 0) on a connection that stayed up meanwhile. It implements
// outbox.Publisher; ackTimeout bounds the wait.
func (c *conn) Publish(ctx context.Context, topic string, payload []byte, qos byte, retain bool) error {
	return c.publish(ctx, topic, payload, qos, retain, 30*time.Second)
}

func (c *conn) publish(ctx context.Context, topic string, payload []byte, qos byte, retain bool, timeout time.Duration) error {
	if !c.up.Load() || !c.client.IsConnectionOpen() {
		return ErrNotConnected
	}
	c.lostMu.Lock()
	lost := c.lost
	c.lostMu.Unlock()
	if !c.up.Load() { // a loss after this point closes lost
		return ErrNotConnected
	}
	gen := c.gen.Load()
	tok := c.client.Publish(topic, qos, retain, payload)
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-tok.Done():
	case <-lost:
		// Whatever paho does with the token later, this delivery is not confirmed.
		return fmt.Errorf("%w: %s", ErrReconnected, topic)
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return fmt.Errorf("%w: %s after %v", ErrAckTimeout, topic, timeout)
	}
	if err := tok.Error(); err != nil {
		return fmt.Errorf("publish %s: %w", topic, err)
	}
	if c.gen.Load() != gen {
		return fmt.Errorf("%w: %s", ErrReconnected, topic)
	}
	return nil
}

// close publishes the offline status (when connected) and disconnects.
func (c *conn) close(offline []byte) {
	if c.up.Load() && offline != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		if err := c.publish(ctx, c.topics.Status(c.id), offline, 1, true, 2*time.Second); err != nil {
			c.log.Warn("offline status not sent", "err", err)
		}
		cancel()
	}
	c.client.Disconnect(250)
	c.up.Store(false)
	c.m.connected.Set(0)
}
