package broker

import (
	"errors"
	"fmt"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus"
)

// Metric names of the broker, all in one place.
const (
	// MetricMessages counts messages the broker accepted for routing, by protocol topic kind.
	MetricMessages = "driftline_hub_mqtt_messages_total"
	// MetricRejected counts what the access control refused, by reason.
	MetricRejected = "driftline_hub_mqtt_rejected_total"
	// MetricDropped counts messages accepted but never handed on, by reason.
	MetricDropped = "driftline_hub_mqtt_dropped_total"
	// MetricPending is the number of sockets accepted but not yet authenticated.
	MetricPending = "driftline_hub_mqtt_unauthenticated_sockets"
)

// Values of the reason label of MetricRejected and MetricDropped.
const (
	reasonAuth           = "auth"            // bad credentials, or an Authenticator error
	reasonPrincipal      = "principal"       // the Authenticator returned an unusable principal
	reasonTakeover       = "takeover"        // a client id held by another principal, or the hub's own
	reasonClientID       = "client_id"       // a client id outside the principal's namespace
	reasonWill           = "will"            // a Will on a topic the principal may not publish
	reasonPublish        = "publish"         // a publish outside the principal's rights
	reasonRead           = "read"            // a subscribe or delivery outside the principal's rights
	reasonRevoked        = "revoked"         // a connection closed by Revoke
	reasonConnectTimeout = "connect_timeout" // no CONNECT (or no TLS handshake) within ConnectTimeout
	reasonPendingCap     = "pending_cap"     // closed at accept: MaxPendingSockets unauthenticated already
	reasonRetainedCap    = "retained_cap"    // a device's retained message beyond MaxRetainedPerDevice
	reasonRate           = "rate"            // a device publishing faster than MaxDeviceRate
	reasonHandlerQueue   = "handler_queue"   // a hub Subscribe handler's queue was full
	reasonClientQueue    = "client_queue"    // a client's write queue was full (mochi drops)
)

// metrics holds the broker's counters.
type metrics struct {
	messages *prometheus.CounterVec
	rejected *prometheus.CounterVec
	dropped  *prometheus.CounterVec
	pending  prometheus.Gauge
}

// newMetrics creates the counters and registers them on reg (nil: not registered). A counter
// already registered by an earlier broker on the same registry is reused, so a broker can be
// restarted in one process.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricMessages,
			Help: "MQTT messages accepted by the embedded broker, by topic kind.",
		}, []string{"topic_kind"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricRejected,
			Help: "Connections, publishes and subscriptions refused by the embedded broker's access control, by reason.",
		}, []string{"reason"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricDropped,
			Help: "MQTT messages accepted but dropped before delivery (full hub handler queue, full client write queue), by reason.",
		}, []string{"reason"}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: MetricPending,
			Help: "Sockets the embedded broker accepted that have not authenticated yet.",
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []**prometheus.CounterVec{&m.messages, &m.rejected, &m.dropped} {
		if err := reg.Register(*c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return nil, fmt.Errorf("register broker metrics: %w", err)
			}
			existing, ok := are.ExistingCollector.(*prometheus.CounterVec)
			if !ok {
				return nil, fmt.Errorf("register broker metrics: %w", err)
			}
			*c = existing
		}
	}
	if err := reg.Register(m.pending); err != nil {
		var are prometheus.AlreadyRegisteredError
		g, ok := prometheus.Gauge(nil), false
		if errors.As(err, &are) {
			g, ok = are.ExistingCollector.(prometheus.Gauge)
		}
		if !ok {
			return nil, fmt.Errorf("register broker metrics: %w", err)
		}
		m.pending = g
	}
	return m, nil
}

func (m *metrics) reject(reason string) { m.rejected.WithLabelValues(reason).Inc() }
func (m *metrics) drop(reason string)   { m.dropped.WithLabelValues(reason).Inc() }

// metricsHook counts what the broker routes and what mochi drops for full client queues.
type metricsHook struct {
	mqtt.HookBase
	rules rules
	m     *metrics
}

// ID names the hook for mochi's logs.
func (h *metricsHook) ID() string { return "driftline-metrics" }

// Provides lists the callbacks the hook implements.
func (h *metricsHook) Provides(b byte) bool {
	return b == mqtt.OnPublished || b == mqtt.OnPublishDropped
}

// OnPublished counts a message the broker accepted, from a client or from the hub.
func (h *metricsHook) OnPublished(_ *mqtt.Client, pk packets.Packet) {
	h.m.messages.WithLabelValues(h.rules.topicKind(pk.TopicName)).Inc()
}

// OnPublishDropped counts a message mochi dropped because a client's write queue was full.
func (h *metricsHook) OnPublishDropped(_ *mqtt.Client, _ packets.Packet) {
	h.m.drop(reasonClientQueue)
}
