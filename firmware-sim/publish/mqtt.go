package publish

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/driftline/driftline/firmware-sim/sim"
	"github.com/driftline/driftline/shared/wire"
)

var (
	// ErrConnect is a device that could not connect to the broker (refused or unreachable).
	ErrConnect = errors.New("publish: connect")
	// ErrPublish is a publish that was not acknowledged in time.
	ErrPublish = errors.New("publish: not acknowledged")
	// ErrNoCredentials is a device without a token when others have one.
	ErrNoCredentials = errors.New("publish: no credentials for device")
)

// DefaultClientSuffix is appended to the device id to make the simulator's MQTT client id (a
// device may use its id or its id, ':' and a suffix; docs/security.md), so
// it never takes over the session of the device's agent (which uses the bare id).
const DefaultClientSuffix = ":sim"

// MQTTOptions configure the MQTT devices of a run.
type MQTTOptions struct {
	// Brokers are the broker URLs (tcp://, ssl://), tried in order.
	Brokers []string
	// Tokens maps device id to token (the MQTT password). Nil: connect without credentials.
	Tokens map[string]string
	// Topics builds the data topic (default wire.Default()).
	Topics wire.Topics
	// ClientSuffix makes the client id (default DefaultClientSuffix).
	ClientSuffix string
	// ConnectTimeout bounds one connect (default 10 s).
	ConnectTimeout time.Duration
	// AckTimeout bounds the wait for one PUBACK (default 10 s).
	AckTimeout time.Duration
	// Logger receives connection events (default slog.Default()).
	Logger *slog.Logger
}

func (o *MQTTOptions) defaults() {
	if o.Topics.Prefix() == "" {
		o.Topics = wire.Default()
	}
	if o.ClientSuffix == "" {
		o.ClientSuffix = DefaultClientSuffix
	}
	if o.ConnectTimeout == 0 {
		o.ConnectTimeout = 10 * time.Second
	}
	if o.AckTimeout == 0 {
		o.AckTimeout = 10 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// MQTTDevice is one simulated device's MQTT connection. It publishes QoS 1 (the data kind's
// QoS) and waits for the PUBACK, so a delivered count is an acknowledged count.
type MQTTDevice struct {
	id     string
	topic  string
	qos    byte
	client paho.Client
	opts   MQTTOptions
	log    *slog.Logger
}

// NewMQTTDevice prepares device id's connection; it connects nothing (Connect does).
func NewMQTTDevice(id string, opts MQTTOptions) (*MQTTDevice, error) {
	opts.defaults()
	co := paho.NewClientOptions()
	for _, b := range opts.Brokers {
		co.AddBroker(b)
	}
	co.SetClientID(id + opts.ClientSuffix).SetCleanSession(true).
		SetAutoReconnect(true).SetMaxReconnectInterval(5 * time.Second).
		SetConnectTimeout(opts.ConnectTimeout).SetOrderMatters(false).
		SetKeepAlive(30 * time.Second)
	if opts.Tokens != nil {
		tok, ok := opts.Tokens[id]
		if !ok {
			return nil, fmt.Errorf("%w %s", ErrNoCredentials, id)
		}
		co.SetUsername(id).SetPassword(tok)
	}
	d := &MQTTDevice{id: id, topic: opts.Topics.Data(id), qos: wire.KindData.QoS(), opts: opts, log: opts.Logger.With("device", id)}
	co.SetConnectionLostHandler(func(_ paho.Client, err error) { d.log.Warn("connection lost", "err", err) })
	d.client = paho.NewClient(co)
	return d, nil
}

// Connect connects to the broker, waiting at most the connect timeout (or ctx).
func (d *MQTTDevice) Connect(ctx context.Context) error {
	tok := d.client.Connect()
	select {
	case <-tok.Done():
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d.opts.ConnectTimeout + time.Second):
		return fmt.Errorf("%w: %s: timed out", ErrConnect, d.id)
	}
	if err := tok.Error(); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrConnect, d.id, err)
	}
	return nil
}

// Send publishes m's payload on the device's data topic and waits for the PUBACK.
func (d *MQTTDevice) Send(ctx context.Context, m sim.Message) error {
	tok := d.client.Publish(d.topic, d.qos, false, m.Payload)
	select {
	case <-tok.Done():
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d.opts.AckTimeout):
		return fmt.Errorf("%w: %s seq %d", ErrPublish, d.id, m.Seq)
	}
	if err := tok.Error(); err != nil {
		return fmt.Errorf("%w: %s seq %d: %v", ErrPublish, d.id, m.Seq, err)
	}
	return nil
}

// Disconnect closes the connection (a disconnect event, or the end of the run).
func (d *MQTTDevice) Disconnect() { d.client.Disconnect(250) }

// RunMQTT plays every device of f over MQTT from start, one connection per device, until the
// streams end or ctx does. A device that cannot connect is an error; the others still play.
func RunMQTT(ctx context.Context, f *sim.Fleet, start time.Time, opts MQTTOptions, stats *Stats) error {
	ids := f.IDs()
	devs := make([]*MQTTDevice, len(ids))
	for i, id := range ids {
		d, err := NewMQTTDevice(id, opts)
		if err != nil {
			return err
		}
		devs[i] = d
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for i, d := range devs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := d.Connect(ctx)
			if err == nil {
				stats.Online.Add(1)
				err = Play(ctx, f.Stream(i), start, d, stats)
				stats.Online.Add(-1)
				d.Disconnect()
			}
			if err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}
