package broker

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/driftline/driftline/internal/testhelp"
	"github.com/mochi-mqtt/server/v2/packets"
)

// v5client is a minimal MQTT 5 client for the tests (paho.mqtt.golang speaks 3.1.1 only): it
// writes and reads real MQTT 5 packets over TCP with mochi's packet codec, acknowledges QoS 1
// publishes, and records everything it receives.
type v5client struct {
	t    testing.TB
	conn net.Conn
	wmu  sync.Mutex
	mu   sync.Mutex
	got  []packets.Packet
	next uint16
	done chan struct{}
	// version is the MQTT protocol version (4 or 5) of every packet written and read.
	version byte
}

// kill drops the connection without DISCONNECT.
func (c *v5client) kill() { _ = c.conn.Close() }

// dialV5 connects clientID as user (a clean start) and waits for a successful CONNACK.
func dialV5(t testing.TB, addr, clientID, user string) *v5client {
	t.Helper()
	return dialRaw(t, addr, 5, clientID, user, nil)
}

// rawWill is the Will of a dialRaw connection.
type rawWill struct {
	topic   string
	payload []byte
	qos     byte
	retain  bool
}

// dialRaw connects with MQTT version (4: 3.1.1, 5) and an optional Will; kill drops the
// connection without DISCONNECT, so the broker sends the Will.
func dialRaw(t testing.TB, addr string, version byte, clientID, user string, will *rawWill) *v5client {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := &v5client{t: t, conn: conn, done: make(chan struct{}), version: 5}
	t.Cleanup(func() {
		_ = c.write(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Disconnect}, ProtocolVersion: 5})
		_ = conn.Close()
		<-c.done
	})
	go c.read()
	connect := packets.Packet{
		FixedHeader:     packets.FixedHeader{Type: packets.Connect},
		ProtocolVersion: version,
		Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), Clean: true, Keepalive: 30,
			ClientIdentifier: clientID, UsernameFlag: true, Username: []byte(user),
			PasswordFlag: true, Password: []byte(testCreds[user])},
	}
	if version < 4 || version > 5 {
		t.Fatalf("mqtt version %d", version)
	}
	if will != nil {
		connect.Connect.WillFlag, connect.Connect.WillTopic, connect.Connect.WillPayload = true, will.topic, will.payload
		connect.Connect.WillQos, connect.Connect.WillRetain = will.qos, will.retain
	}
	c.version = version
	if err := c.write(connect); err != nil {
		t.Fatal(err)
	}
	ack := c.wait(func(pk packets.Packet) bool { return pk.FixedHeader.Type == packets.Connack })
	if ack.ReasonCode != 0 {
		t.Fatalf("connect %s: reason %#x", clientID, ack.ReasonCode)
	}
	return c
}

// encodePacket encodes pk, one of the packet types the tests' clients send.
func encodePacket(pk packets.Packet) ([]byte, error) {
	var buf bytes.Buffer
	var err error
	switch pk.FixedHeader.Type {
	case packets.Connect:
		err = pk.ConnectEncode(&buf)
	case packets.Subscribe:
		err = pk.SubscribeEncode(&buf)
	case packets.Publish:
		err = pk.PublishEncode(&buf)
	case packets.Puback:
		err = pk.PubackEncode(&buf)
	case packets.Disconnect:
		err = pk.DisconnectEncode(&buf)
	default:
		err = fmt.Errorf("packet type %d", pk.FixedHeader.Type)
	}
	return buf.Bytes(), err
}

func (c *v5client) write(pk packets.Packet) error {
	pk.ProtocolVersion = c.version
	b, err := encodePacket(pk)
	if err != nil {
		return err
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err = c.conn.Write(b)
	return err
}

func (c *v5client) read() {
	defer close(c.done)
	r := bufio.NewReader(c.conn)
	for {
		b, err := r.ReadByte()
		if err != nil {
			return
		}
		pk := packets.Packet{ProtocolVersion: c.version}
		if err := pk.FixedHeader.Decode(b); err != nil {
			return
		}
		n, _, err := packets.DecodeLength(r)
		if err != nil {
			return
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(r, body); err != nil {
			return
		}
		switch pk.FixedHeader.Type {
		case packets.Connack:
			err = pk.ConnackDecode(body)
		case packets.Suback:
			err = pk.SubackDecode(body)
		case packets.Puback:
			err = pk.PubackDecode(body)
		case packets.Disconnect:
			err = pk.DisconnectDecode(body)
		case packets.Publish:
			err = pk.PublishDecode(body)
			if err == nil && pk.FixedHeader.Qos == 1 {
				_ = c.write(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: pk.PacketID, ProtocolVersion: 5})
			}
		}
		if err != nil {
			c.t.Errorf("v5 client: decode %v: %v", pk.FixedHeader.Type, err)
			return
		}
		c.mu.Lock()
		c.got = append(c.got, pk)
		c.mu.Unlock()
	}
}

// wait returns the first received packet for which ok holds, waiting up to 10 s.
func (c *v5client) wait(ok func(packets.Packet) bool) packets.Packet {
	c.t.Helper()
	var found packets.Packet
	testhelp.WaitFor(c.t, 10*time.Second, "mqtt5 packet", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, pk := range c.got {
			if ok(pk) {
				found = pk
				return true
			}
		}
		return false
	})
	return found
}

// publishes returns the PUBLISH packets received on topic so far.
func (c *v5client) publishes(topic string) []packets.Packet {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []packets.Packet
	for _, pk := range c.got {
		if pk.FixedHeader.Type == packets.Publish && pk.TopicName == topic {
			out = append(out, pk)
		}
	}
	return out
}

// subscribe sends one SUBSCRIBE (subscription identifier id, 0: none) and returns its reason
// codes once the SUBACK arrived. Everything the broker sends for it before the SUBACK's next
// packet has been received when a later subscribe returns (one connection, in order).
func (c *v5client) subscribe(id int, subs ...packets.Subscription) []byte {
	c.t.Helper()
	c.mu.Lock()
	c.next++
	pid := c.next
	c.mu.Unlock()
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, ProtocolVersion: 5,
		PacketID: pid, Filters: subs}
	if id > 0 {
		pk.Properties.SubscriptionIdentifier = []int{id}
	}
	if err := c.write(pk); err != nil {
		c.t.Fatal(err)
	}
	return c.wait(func(pk packets.Packet) bool {
		return pk.FixedHeader.Type == packets.Suback && pk.PacketID == pid
	}).ReasonCodes
}

// publish sends a QoS 1 publish and waits for its PUBACK.
func (c *v5client) publish(topic string, payload []byte, retain bool) {
	c.t.Helper()
	c.mu.Lock()
	c.next++
	pid := c.next
	c.mu.Unlock()
	if err := c.write(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1, Retain: retain},
		ProtocolVersion: 5, PacketID: pid, TopicName: topic, Payload: payload}); err != nil {
		c.t.Fatal(err)
	}
	ack := c.wait(func(pk packets.Packet) bool { return pk.FixedHeader.Type == packets.Puback && pk.PacketID == pid })
	if ack.ReasonCode >= 0x80 {
		c.t.Fatalf("publish %s: reason %#x", topic, ack.ReasonCode)
	}
}
