package broker

import (
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/driftline/driftline/internal/testhelp"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// BenchmarkACLCheck measures the per-delivery access check with 10,000 connected devices.
func BenchmarkACLCheck(b *testing.B) {
	m, _ := newMetrics(nil)
	r, _ := newRules("")
	h := newACLHook(r, nil, m, testhelp.Logger(b, slog.LevelInfo))
	srv := mqtt.New(&mqtt.Options{Logger: testhelp.Logger(b, slog.LevelInfo)})
	var cls []*mqtt.Client
	for i := 0; i < 10000; i++ {
		id := fmt.Sprintf("edge-%05d", i)
		cl := srv.NewClient(nil, "tcp", id, false)
		h.put(cl, Principal{Kind: Device, ID: id})
		cls = append(cls, cl)
	}
	topics := make([]string, len(cls))
	for i, cl := range cls {
		topics[i] = "dl/v1/dev/" + cl.ID + "/desired"
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if !h.OnACLCheck(cls[i%len(cls)], topics[i%len(cls)], false) {
				b.Fatal("denied")
			}
			i++
		}
	})
}

// BenchmarkHandlerEnqueue measures what a hub subscription costs the publishing client's
// goroutine: hashing the topic and copying a 200-byte payload into a worker's queue.
func BenchmarkHandlerEnqueue(b *testing.B) {
	m, _ := newMetrics(nil)
	d := newDispatcher(DefaultHandlerWorkers, DefaultHandlerQueue, m, testhelp.Logger(b, slog.LevelInfo))
	defer d.close()
	payload := make([]byte, 200)
	h := func(string, []byte) {}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		d.enqueue(h, "dl/v1/dev/edge-00001/heartbeat", payload)
	}
}

// BenchmarkDeviceLimits measures the per-publish cost of the device limits (rate bucket and
// retained count) for 10,000 devices publishing retained status messages.
func BenchmarkDeviceLimits(b *testing.B) {
	m, _ := newMetrics(nil)
	r, _ := newRules("")
	acl := newACLHook(r, nil, m, testhelp.Logger(b, slog.LevelInfo))
	srv := mqtt.New(&mqtt.Options{Logger: testhelp.Logger(b, slog.LevelInfo)})
	h := &limitsHook{acl: acl, m: m, rate: 1e9, burst: 1e9, maxRetained: DefaultMaxRetainedPerDevice, now: time.Now,
		buckets: map[string]*bucket{}, retained: map[string]map[string]bool{}}
	var cls []*mqtt.Client
	var pks []packets.Packet
	for i := 0; i < 10000; i++ {
		id := fmt.Sprintf("edge-%05d", i)
		cl := srv.NewClient(nil, "tcp", id, false)
		acl.put(cl, Principal{Kind: Device, ID: id})
		cls = append(cls, cl)
		pks = append(pks, packets.Packet{TopicName: "dl/v1/dev/" + id + "/status", Payload: []byte(`{}`),
			FixedHeader: packets.FixedHeader{Type: packets.Publish, Retain: true, Qos: 1}})
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if pk, err := h.OnPublish(cls[i%len(cls)], pks[i%len(pks)]); err != nil || !pk.FixedHeader.Retain {
				b.Fatal("limited")
			}
			i++
		}
	})
}
