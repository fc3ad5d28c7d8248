package node_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/driftline/driftline/hub/node/nodetest"
	"github.com/driftline/driftline/internal/testhelp"
	"github.com/driftline/driftline/shared/wire"
)

// BenchmarkHubMemoryPerDevice measures what one connected device costs the hub process: the
// Go heap in use and the goroutine stacks, per device, after devices connections have each
// connected, subscribed to what an agent subscribes to and published a retained status and a
// heartbeat, and the hub has applied their telemetry. The devices are bare MQTT sockets written
// with mochi's encoders (no client goroutines, no client buffers beyond the socket), so the
// growth is the hub's own: the embedded broker's per-client state and goroutines, the hub's
// per-device maps. issue 18's goal is 64 KiB per device for everything; bench-fleet measures the
// whole process at 10,000 (docs/benchmarks.md).
func BenchmarkHubMemoryPerDevice(b *testing.B) {
	const devices = 300
	for range b.N {
		b.StopTimer()
		h := nodetest.Start(b)
		h.WaitTrust()
		topics, err := wire.NewTopics(wire.DefaultPrefix)
		if err != nil {
			b.Fatal(err)
		}
		tokens := make([]string, devices)
		for i := range tokens {
			tokens[i] = h.Enroll(fmt.Sprintf("mem-%04d", i), nil)
		}
		addr := strings.TrimPrefix(h.MQTTURL(), "tcp://")
		before := memNow()
		b.StartTimer()
		conns := make([]net.Conn, devices)
		for i := range conns {
			conns[i] = connectDevice(b, addr, topics, fmt.Sprintf("mem-%04d", i), tokens[i])
		}
		b.StopTimer()
		testhelp.WaitFor(b, 30*time.Second, "every device online", func() bool {
			n := 0
			var page struct {
				Items []struct {
					Online bool `json:"online"`
				} `json:"items"`
			}
			h.Call("GET", "/api/v1/devices?limit=1000", nil, 200, &page)
			for _, d := range page.Items {
				if d.Online {
					n++
				}
			}
			return n == devices
		})
		after := memNow()
		b.ReportMetric(float64(after.heap-before.heap)/devices, "heap-B/device")
		b.ReportMetric(float64(after.stacks-before.stacks)/devices, "stack-B/device")
		b.ReportMetric(float64(after.goroutines-before.goroutines)/devices, "goroutines/device")
		for _, c := range conns {
			c.Close()
		}
	}
}

type memFigures struct{ heap, stacks, goroutines int64 }

// memNow is the heap in use and the stacks after a collection.
func memNow() memFigures {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return memFigures{heap: int64(m.HeapInuse), stacks: int64(m.StackInuse), goroutines: int64(runtime.NumGoroutine())}
}

// connectDevice opens one device's MQTT 3.1.1 session on a bare socket: CONNECT (waiting for the
// CONNACK), SUBSCRIBE to the device's desired, chunk and ack topics and the rollouts topic, and a
// retained status and a heartbeat, as an agent does at start.
func connectDevice(tb testing.TB, addr string, topics wire.Topics, id, token string) net.Conn {
	tb.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	write := func(pk packets.Packet, enc func(*packets.Packet, *bytes.Buffer) error) {
		var buf bytes.Buffer
		if err := enc(&pk, &buf); err != nil {
			tb.Fatal(err)
		}
		if _, err := c.Write(buf.Bytes()); err != nil {
			tb.Fatal(err)
		}
	}
	write(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, ProtocolVersion: 4, Connect: packets.ConnectParams{
		ProtocolName: []byte("MQTT"), Clean: true, Keepalive: 60, ClientIdentifier: id, UsernameFlag: true, Username: []byte(id),
		PasswordFlag: true, Password: []byte(token)}}, (*packets.Packet).ConnectEncode)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	ack := make([]byte, 4)
	if _, err := bufio.NewReader(c).Read(ack); err != nil || ack[0]>>4 != packets.Connack || ack[3] != 0 {
		tb.Fatalf("%s: CONNACK % x: %v", id, ack, err)
	}
	_ = c.SetReadDeadline(time.Time{})
	var filters packets.Subscriptions
	for _, t := range []string{topics.Desired(id), topics.Chunk(id), topics.Ack(id), topics.Prefix() + "/fleet/rollouts/+"} {
		filters = append(filters, packets.Subscription{Filter: t, Qos: 1})
	}
	write(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, ProtocolVersion: 4, PacketID: 1, Filters: filters},
		(*packets.Packet).SubscribeEncode)
	now := time.Now().UnixMilli()
	status, _ := json.Marshal(wire.Status{Header: wire.Header{DeviceID: id, TS: now}, Online: true, AgentVersion: "bench", Reason: "connect"})
	hb, _ := json.Marshal(wire.Heartbeat{Header: wire.Header{DeviceID: id, TS: now}, AgentVersion: "bench", ActiveModels: []string{}})
	write(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1, Retain: true}, ProtocolVersion: 4, PacketID: 2,
		TopicName: topics.Status(id), Payload: status}, (*packets.Packet).PublishEncode)
	write(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}, ProtocolVersion: 4,
		TopicName: topics.Heartbeat(id), Payload: hb}, (*packets.Packet).PublishEncode)
	return c
}
