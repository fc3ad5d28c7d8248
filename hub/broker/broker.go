// Package broker is the hub's embedded MQTT broker: mochi-mqtt with Driftline's access control
// (devices, viewers and the hub itself, SPEC section 3), retained messages and persistent
// sessions kept in the hub's badger database, and a client API for the hub's own code (Publish,
// Subscribe) that never lets a slow hub handler stall the broker.
//
// For an external broker (`--broker`), WriteMosquittoACL and WriteMosquittoPasswd render the same
// rules for Mosquitto. See DESIGN.md for the invariants.
package broker

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/dgraph-io/badger/v4"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus"
)

// Sizes of the broker, chosen for chunk transfer (SPEC section 3: chunk frames stay under 1 MiB).
const (
	// MaxFrame is the largest chunk frame payload the protocol sends.
	MaxFrame = 1 << 20
	// DefaultMaxPacketSize is the largest MQTT packet accepted or sent: a full frame plus room for
	// the fixed header, the topic, the packet id and v5 properties.
	DefaultMaxPacketSize = MaxFrame + 64<<10
	// DefaultClientWritesPending is the per-client queue of packets waiting to be written; mochi
	// drops a packet when it is full, QoS 1 included. What may queue for one device at once: its
	// chunk frames, a window at a time (the agent's default window is 6 requests x 16 digests =
	// 96 frames; a wave's chunks go out on the shared topic, paced by the copies they cost), its
	// desired state and acknowledgements. Retained messages at subscribe do not queue (written
	// directly, retainHook). So it holds one default window and room beside it. It is allocated
	// with each client, a channel of pointers: 1.1 KiB at 128, 4.7 KiB at 512 (the value before,
	// docs/benchmarks.md "Hub steady state").
	DefaultClientWritesPending = 128
	// DefaultClientReadBuffer is each client's read buffer (mochi's bufio.Reader, allocated with
	// the client and kept for its life; mochi's default is 2 KiB). What devices send is small
	// (heartbeats, statuses, reports, fetch requests, acknowledgements: one fill reads several);
	// a packet larger than the buffer is read straight into the packet's own slice, so only the
	// number of reads for a burst of small packets depends on it.
	DefaultClientReadBuffer = 512
	// DefaultReceiveMaximum is how many QoS 1/2 publishes a client may have unacknowledged towards
	// the broker (fetch requests and reports); mochi disconnects a client that exceeds it.
	DefaultReceiveMaximum = 512
	// DefaultSessionExpiry bounds how long a disconnected persistent session is kept (30 days),
	// so sessions of devices that are gone do not pile up in memory and on disk.
	DefaultSessionExpiry = 30 * 24 * time.Hour
	// DefaultHandlerWorkers is the number of goroutines running Subscribe handlers.
	DefaultHandlerWorkers = 4
	// DefaultHandlerQueue is the queue length of each handler worker: about a second of
	// telemetry from a 10,000-device fleet across the workers.
	DefaultHandlerQueue = 4096
	// DefaultConnectTimeout is how long a socket has to finish its TLS handshake, send CONNECT
	// and be authenticated before it is closed.
	DefaultConnectTimeout = 10 * time.Second
	// DefaultMaxPendingSockets caps the sockets accepted but not yet authenticated (each holds a
	// goroutine and buffers, ~30 KiB). A fleet reconnecting after a hub restart sees some refused
	// at accept and retries with its backoff.
	DefaultMaxPendingSockets = 1024
	// DefaultMaxDeviceRate is the messages a second one device may publish on average, and
	// DefaultDeviceBurst the burst above it: far above what an agent sends (a heartbeat, reports,
	// fetch requests a window at a time, a sensor at a few readings a second).
	DefaultMaxDeviceRate = 100
	DefaultDeviceBurst   = 500
	// DefaultMaxRetainedPerDevice caps the retained topics a device may hold under its subtree
	// (the protocol retains `status` and `reported`; the rest is room).
	DefaultMaxRetainedPerDevice = 16
	// DefaultRefusedLogInterval is how often one client's refused connects may be logged.
	DefaultRefusedLogInterval = time.Minute
)

// Config configures a Broker. Auth and at least one listener are required.
type Config struct {
	// Addr is the plain MQTT listener, e.g. ":1883" or "127.0.0.1:0"; empty disables it.
	Addr string
	// TLSAddr is the MQTTS listener beside the plain one, serving TLSCertFile and TLSKeyFile
	// (PEM); empty disables it.
	TLSAddr     string
	TLSCertFile string
	TLSKeyFile  string
	// Prefix is the protocol topic prefix; empty means DefaultPrefix ("dl/v1").
	Prefix string
	// DB is the hub's badger database; retained messages and persistent sessions are kept in it
	// under "broker/". Nil keeps them in memory only. The broker never closes it.
	DB *badger.DB
	// Auth authenticates every connecting client.
	Auth Authenticator
	// Registerer receives the broker's counters; nil registers nothing.
	Registerer prometheus.Registerer
	// Logger receives the broker's and mochi's logs; nil discards them.
	Logger *slog.Logger
	// MaxPacketSize is the largest MQTT packet in either direction; 0 means DefaultMaxPacketSize.
	MaxPacketSize uint32
	// ClientWritesPending is each client's write queue; 0 means DefaultClientWritesPending.
	ClientWritesPending int32
	// ReceiveMaximum is the unacknowledged QoS publishes a client may send; 0 means
	// DefaultReceiveMaximum.
	ReceiveMaximum uint16
	// SessionExpiry bounds how long a disconnected persistent session is kept; 0 means
	// DefaultSessionExpiry.
	SessionExpiry time.Duration
	// HandlerWorkers is the number of goroutines running Subscribe handlers; 0 means
	// DefaultHandlerWorkers.
	HandlerWorkers int
	// HandlerQueue is the queue length of each handler worker; 0 means DefaultHandlerQueue.
	HandlerQueue int
	// TLSClientCAFile, when set, makes the TLS listener require a client certificate signed by
	// one of these CAs (PEM) besides the token: mutual TLS for devices.
	TLSClientCAFile string
	// Limits protect the broker from misbehaving clients.
	Limits
}

// Limits are the broker's limits on its clients (`hub serve --mqtt-connect-timeout` and the
// flags beside it set them). A zero field takes its default.
type Limits struct {
	// ConnectTimeout bounds the time from accept to an authenticated CONNECT; 0 or negative
	// means DefaultConnectTimeout.
	ConnectTimeout time.Duration
	// MaxPendingSockets caps sockets not yet authenticated; 0 means DefaultMaxPendingSockets,
	// negative means no cap.
	MaxPendingSockets int
	// MaxDeviceRate and DeviceBurst limit a device's publishes (messages a second, burst).
	// A zero MaxDeviceRate means DefaultMaxDeviceRate, a negative one no limit; a zero or
	// negative DeviceBurst means the larger of DefaultDeviceBurst and MaxDeviceRate.
	MaxDeviceRate, DeviceBurst float64
	// MaxRetainedPerDevice caps a device's retained topics; 0 means the default, negative none.
	MaxRetainedPerDevice int
}

// Broker is a running embedded MQTT broker. Its methods are safe for concurrent use.
type Broker struct {
	srv     *mqtt.Server
	acl     *aclHook
	store   *storeHook // nil without a DB
	limits  *limitsHook
	ret     *retainedStore
	rh      *retainHook
	disp    *dispatcher
	rules   rules
	maxPkt  int
	log     *slog.Logger
	m       *metrics
	plain   *listener
	secure  *listener
	nextSub atomic.Int64
	closed  atomic.Bool
	once    sync.Once
}

// New builds the broker, binds its listeners, restores stored state from cfg.DB and starts
// serving. When it returns without error, Addr and TLSAddr give the bound addresses.
func New(cfg Config) (*Broker, error) {
	if cfg.Auth == nil {
		return nil, fmt.Errorf("%w: Auth is required", ErrConfig)
	}
	if cfg.Addr == "" && cfg.TLSAddr == "" {
		return nil, fmt.Errorf("%w: no listener (Addr and TLSAddr are empty)", ErrConfig)
	}
	if cfg.TLSAddr != "" && (cfg.TLSCertFile == "" || cfg.TLSKeyFile == "") {
		return nil, fmt.Errorf("%w: TLSAddr needs TLSCertFile and TLSKeyFile", ErrConfig)
	}
	r, err := newRules(cfg.Prefix)
	if err != nil {
		return nil, err
	}
	cfg = withDefaults(cfg)
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}

	caps := mqtt.NewDefaultServerCapabilities() // a partial struct would zero the rest
	caps.MaximumMessageExpiryInterval = 0       // retained `desired` states never expire
	// Retained messages live in retainHook's store, not in mochi: with RetainAvailable = 0
	// mochi's retainMessage stores nothing, so its once-a-second sweep (which copies the whole
	// retained map) has nothing to copy and its unlocked retained read (mochi-mqtt/server#200)
	// nothing to race with. Mochi 2.7.9 reads this field only there and when it checks a Will
	// (retainHook gets the Will past that); it does not advertise it in CONNACK.
	caps.RetainAvailable = 0
	caps.MaximumPacketSize = cfg.MaxPacketSize
	caps.MaximumClientWritesPending = cfg.ClientWritesPending
	caps.ReceiveMaximum = cfg.ReceiveMaximum
	caps.MaximumSessionExpiryInterval = uint32(cfg.SessionExpiry / time.Second)
	srv := mqtt.New(&mqtt.Options{
		Capabilities:            caps,
		InlineClient:            true,
		Logger:                  cfg.Logger,
		SysTopicResendInterval:  10,
		ClientNetReadBufferSize: DefaultClientReadBuffer,
	})

	b := &Broker{
		srv:    srv,
		rules:  r,
		maxPkt: int(cfg.MaxPacketSize),
		log:    cfg.Logger,
		m:      m,
		acl:    newACLHook(r, cfg.Auth, m, cfg.Logger),
	}
	b.acl.server = srv
	b.limits = &limitsHook{acl: b.acl, m: m, rate: cfg.MaxDeviceRate, burst: cfg.DeviceBurst,
		maxRetained: cfg.MaxRetainedPerDevice, now: time.Now, buckets: map[string]*bucket{}, retained: map[string][]string{}}
	b.ret = &retainedStore{}
	rh := &retainHook{store: b.ret, acl: b.acl, srv: srv}
	b.rh = rh
	// Order matters: retainHook's OnPublish runs after the ACL and the limits (which may take the
	// retain flag off a device's publish) allowed the message.
	hooks := []mqtt.Hook{b.acl, b.limits, &metricsHook{rules: r, m: m}, rh}
	if cfg.DB != nil {
		b.store = &storeHook{db: cfg.DB, log: cfg.Logger}
		rh.persist = b.store
		hooks = append(hooks, b.store)
		stored, err := b.store.loadRetained()
		if err != nil {
			return nil, err
		}
		for _, sm := range stored {
			b.ret.set(newRetainedMsg(sm.ToPacket()))
		}
		srv.Info.Retained = int64(b.ret.len())
	}
	for _, h := range hooks {
		if err := srv.AddHook(h, nil); err != nil {
			return nil, fmt.Errorf("add mqtt hook %s: %w", h.ID(), err)
		}
	}
	if err := b.listen(cfg); err != nil {
		srv.Listeners.CloseAll(func(string) {})
		return nil, err
	}
	b.disp = newDispatcher(cfg.HandlerWorkers, cfg.HandlerQueue, b.ret, m, cfg.Logger)
	if err := srv.Serve(); err != nil {
		srv.Listeners.CloseAll(func(string) {})
		b.disp.close()
		return nil, fmt.Errorf("start mqtt broker: %w", err)
	}
	b.log.Info("mqtt broker started", "addr", b.Addr(), "tls_addr", b.TLSAddr(), "prefix", r.prefix, "persistent", cfg.DB != nil)
	return b, nil
}

func withDefaults(cfg Config) Config {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxPacketSize == 0 {
		cfg.MaxPacketSize = DefaultMaxPacketSize
	}
	if cfg.ClientWritesPending <= 0 {
		cfg.ClientWritesPending = DefaultClientWritesPending
	}
	if cfg.ReceiveMaximum == 0 {
		cfg.ReceiveMaximum = DefaultReceiveMaximum
	}
	if cfg.SessionExpiry <= 0 {
		cfg.SessionExpiry = DefaultSessionExpiry
	}
	if cfg.HandlerWorkers <= 0 {
		cfg.HandlerWorkers = DefaultHandlerWorkers
	}
	if cfg.HandlerQueue <= 0 {
		cfg.HandlerQueue = DefaultHandlerQueue
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = DefaultConnectTimeout
	}
	switch {
	case cfg.MaxPendingSockets == 0:
		cfg.MaxPendingSockets = DefaultMaxPendingSockets
	case cfg.MaxPendingSockets < 0:
		cfg.MaxPendingSockets = 0 // no cap
	}
	if cfg.MaxDeviceRate == 0 {
		cfg.MaxDeviceRate = DefaultMaxDeviceRate
	}
	if cfg.DeviceBurst <= 0 {
		cfg.DeviceBurst = max(DefaultDeviceBurst, cfg.MaxDeviceRate)
	}
	switch {
	case cfg.MaxRetainedPerDevice == 0:
		cfg.MaxRetainedPerDevice = DefaultMaxRetainedPerDevice
	case cfg.MaxRetainedPerDevice < 0:
		cfg.MaxRetainedPerDevice = 0 // no cap
	}
	return cfg
}

// listen binds the plain and TLS listeners.
func (b *Broker) listen(cfg Config) error {
	mk := func(id, addr string, tc *tls.Config) *listener {
		return &listener{id: id, address: addr, tlsConfig: tc, connectTimeout: cfg.ConnectTimeout,
			maxPending: int64(cfg.MaxPendingSockets), m: b.m, log: cfg.Logger, closeClients: b.closeListenerClients}
	}
	if cfg.Addr != "" {
		b.plain = mk("tcp", cfg.Addr, nil)
		if err := b.srv.AddListener(b.plain); err != nil {
			return fmt.Errorf("mqtt listener %s: %w", cfg.Addr, err)
		}
	}
	if cfg.TLSAddr != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCertFile, cfg.TLSKeyFile)
		if err != nil {
			return fmt.Errorf("mqtts certificate %s: %w", cfg.TLSCertFile, err)
		}
		tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		if cfg.TLSClientCAFile != "" {
			pem, err := os.ReadFile(cfg.TLSClientCAFile)
			if err != nil {
				return fmt.Errorf("%w: mqtts client CA: %v", ErrConfig, err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return fmt.Errorf("%w: mqtts client CA %s: no PEM certificate", ErrConfig, cfg.TLSClientCAFile)
			}
			tc.ClientCAs, tc.ClientAuth = pool, tls.RequireAndVerifyClientCert
		}
		b.secure = mk("tls", cfg.TLSAddr, tc)
		if err := b.srv.AddListener(b.secure); err != nil {
			return fmt.Errorf("mqtts listener %s: %w", cfg.TLSAddr, err)
		}
	}
	return nil
}

// Addr returns the bound address of the plain listener ("" when disabled).
func (b *Broker) Addr() string {
	if b.plain == nil {
		return ""
	}
	return b.plain.Address()
}

// TLSAddr returns the bound address of the TLS listener ("" when disabled).
func (b *Broker) TLSAddr() string {
	if b.secure == nil {
		return ""
	}
	return b.secure.Address()
}

// Publish publishes payload on topic as the hub, bypassing the ACL. A retained message replaces
// the topic's retained state (and is stored when the broker has a DB); an empty retained payload
// clears it. qos (0..2) caps the QoS subscribers receive it with. It returns once the message is
// routed to every subscriber's queue; it does not wait for delivery.
func (b *Broker) Publish(topic string, payload []byte, retain bool, qos byte) error {
	if b.closed.Load() {
		return ErrClosed
	}
	if !validTopicName(topic) {
		return fmt.Errorf("%w: %q", ErrBadTopic, topic)
	}
	if qos > 2 {
		return fmt.Errorf("%w: qos %d", ErrBadTopic, qos)
	}
	if n := len(topic) + len(payload) + 16; n > b.maxPkt {
		return fmt.Errorf("%w: %d bytes on %s, limit %d", ErrTooLarge, len(payload), topic, b.maxPkt)
	}
	if err := b.srv.Publish(topic, payload, retain, qos); err != nil {
		return fmt.Errorf("publish %s: %w", topic, err)
	}
	return nil
}

// PublishCopiesPayload reports that Publish is done with the payload when it returns: mochi
// copies it for each subscriber (packets.Packet.Copy) before queueing, and keeps nothing else
// of it (chunk frames are not retained). protocol.PayloadCopier.
func (b *Broker) PublishCopiesPayload() bool { return true }

// Subscribers returns how many clients' subscriptions match topic now (shared subscriptions
// count once per group). protocol.SubscriberCounter: the shared chunk fan-out paces its
// publishes by the copies mochi makes.
func (b *Broker) Subscribers(topic string) int {
	subs := b.srv.Topics.Subscribers(topic)
	return len(subs.Subscriptions) + len(subs.Shared)
}

// Subscribe calls handler for every message on a topic matching filter, retained ones included.
// The handler runs on a worker of the broker's handler queues, never on the publisher's
// goroutine: messages of one topic arrive in order, and when a live message finds its queue
// full it is dropped and counted in MetricDropped, since the broker never waits for the hub.
// The retained messages are never dropped: Subscribe puts their topics on the workers' replay
// lists before it returns, without blocking, and each is delivered as the topic's retained
// message stands when its worker gets to it (after any live message waiting), so it may arrive
// twice (replayed and live) but never older than a live one handled before it. The payload is
// the handler's own copy. Subscriptions last until Close.
func (b *Broker) Subscribe(filter string, handler func(topic string, payload []byte)) error {
	if b.closed.Load() {
		return ErrClosed
	}
	if handler == nil || !mqtt.IsValidFilter(filter, false) {
		return fmt.Errorf("%w: filter %q", ErrBadTopic, filter)
	}
	id := int(b.nextSub.Add(1))
	err := b.srv.Subscribe(filter, id, func(_ *mqtt.Client, _ packets.Subscription, pk packets.Packet) {
		b.disp.enqueue(handler, pk.TopicName, pk.Payload)
	})
	if err != nil {
		return fmt.Errorf("subscribe %s: %w", filter, err)
	}
	// The retained messages are in the broker's store, not mochi's (retainHook). Read after the
	// subscription is in place, so a retained publish racing it reaches the handler one way or
	// the other (or both). Only the topics are queued: the worker reads the message when it
	// delivers it, so a copy read here can never overtake a newer live message.
	live, _ := b.ret.match(filter, time.Now().Unix())
	if len(live) == 0 {
		return nil
	}
	topics := make([]string, len(live))
	for i, m := range live {
		topics[i] = m.topic
	}
	if !b.disp.replay(handler, topics) {
		return ErrClosed
	}
	return nil
}

// Revoke forgets every connection of the device and disconnects them at once (MQTT reason "not
// authorized"). The hub must have stopped accepting the device's token first, so the device
// cannot reconnect; a connection whose authentication overlaps Revoke is authenticated again.
func (b *Broker) Revoke(deviceID string) {
	b.acl.revoke(Principal{Kind: Device, ID: deviceID})
}

// RevokePrincipal is Revoke for any principal, e.g. a deleted viewer token: every connection
// that authenticated as exactly p (kind and id) is forgotten and disconnected.
func (b *Broker) RevokePrincipal(p Principal) {
	b.acl.revoke(p)
}

// closeListenerClients disconnects the clients of one listener as the broker shuts down: what
// mochi's Server.closeListenerClients does, without its Clients.GetByListener, which takes the
// clients' read lock twice (nested, through Len): a client disconnecting in between queues for
// the write lock (Clients.Delete) and the nested read lock waits behind it, a deadlock that hung
// Close (mochi v2.7.9; TestCloseWhileClientsDisconnect). GetAll takes the lock once.
func (b *Broker) closeListenerClients(listener string) {
	for _, cl := range b.srv.Clients.GetAll() {
		if cl.Net.Listener == listener && !cl.Closed() {
			_ = b.srv.DisconnectClient(cl, packets.ErrServerShuttingDown)
		}
	}
}

// Close disconnects every client, stops the listeners, waits (up to 5 s) for client goroutines
// and for queued Subscribe handlers to finish; retained messages a Subscribe still owes its
// handler are not delivered (the next Subscribe reads them again). It leaves the DB open.
// Calling it again is a no-op.
func (b *Broker) Close() error {
	b.once.Do(func() {
		b.closed.Store(true)
		_ = b.srv.Close()
		done := make(chan struct{})
		go func() {
			b.srv.Listeners.ClientsWg.Wait()
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			b.log.Warn("mqtt broker: clients still closing after 5s")
		}
		b.disp.close()
	})
	return nil
}

// validTopicName reports whether topic can be published to: non-empty, valid UTF-8, no
// wildcards or NUL, within the MQTT string limit.
func validTopicName(topic string) bool {
	return topic != "" && len(topic) <= 65535 && utf8.ValidString(topic) && !strings.ContainsAny(topic, "+#\x00")
}
