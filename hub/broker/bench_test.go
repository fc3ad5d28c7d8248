package broker

import (
	"fmt"
	"testing"

	mqtt "github.com/mochi-mqtt/server/v2"
)

// BenchmarkACLCheck measures the per-delivery access check with 10,000 connected devices.
func BenchmarkACLCheck(b *testing.B) {
	m, _ := newMetrics(nil)
	r, _ := newRules("")
	h := newACLHook(r, nil, m, testLogger(b))
	srv := mqtt.New(&mqtt.Options{Logger: testLogger(b)})
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
	d := newDispatcher(DefaultHandlerWorkers, DefaultHandlerQueue, m, testLogger(b))
	defer d.close()
	payload := make([]byte, 200)
	h := func(string, []byte) {}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		d.enqueue(h, "dl/v1/dev/edge-00001/heartbeat", payload)
	}
}
