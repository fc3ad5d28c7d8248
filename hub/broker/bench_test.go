package broker

import (
	"fmt"
	"log/slog"
	"runtime"
	"sync/atomic"
	"syscall"
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
	d := newDispatcher(DefaultHandlerWorkers, DefaultHandlerQueue, &retainedStore{}, m, testhelp.Logger(b, slog.LevelInfo))
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
		buckets: map[string]*bucket{}, retained: map[string][]string{}}
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

// BenchmarkRetainedSweep measures what the embedded broker costs when idle with a fleet's
// retained messages and sessions (issue 18): N devices, each with three retained topics
// (status, desired, reported; 300-byte payloads) published through Broker.Publish, so they land
// wherever the broker keeps them, and N client sessions in mochi's table. Mochi runs its
// housekeeping once a second: clearExpiredRetainedMessages (GetAll copies the whole retained
// map, then checks each message), clearExpiredClients and clearExpiredInflights (each copies
// the clients map).
//
//   - idle: the real broker, untouched for one second per op; cpu-ms/op is the process's CPU
//     per idle second (mochi's real loop, the garbage collector included): the figure that
//     counts; heap-B/device is the live heap after setup (retained messages, the sessions'
//     client objects with their write queues, the broker) over the devices;
//   - retained, clients: one pass of the loop bodies, copied (mochi's methods are unexported),
//     to split the idle figure.
func BenchmarkRetainedSweep(b *testing.B) {
	for _, devices := range []int{10_000, 100_000} {
		brk, err := New(Config{Addr: "127.0.0.1:0", Auth: newTableAuth(), Logger: testhelp.Logger(b, slog.LevelWarn)})
		if err != nil {
			b.Fatal(err)
		}
		payload := make([]byte, 300)
		for i := 0; i < devices; i++ {
			base := fmt.Sprintf("dl/v1/dev/edge-%06d/", i)
			for _, k := range []string{"status", "desired", "reported"} {
				if err := brk.Publish(base+k, payload, true, 1); err != nil {
					b.Fatal(err)
				}
			}
			brk.srv.Clients.Add(brk.srv.NewClient(nil, "tcp", fmt.Sprintf("edge-%06d", i), false))
		}
		if n := atomic.LoadInt64(&brk.srv.Info.Retained); n < int64(3*devices) { // mochi also counts its $SYS topics
			b.Fatalf("broker holds %d retained messages, want %d", n, 3*devices)
		}
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		heapPerDevice := float64(ms.HeapAlloc) / float64(devices) // retained messages, sessions, the broker
		srv := brk.srv
		maxExpiry := srv.Options.Capabilities.MaximumMessageExpiryInterval
		b.Run(fmt.Sprintf("idle/devices=%d", devices), func(b *testing.B) {
			b.ReportAllocs()
			defer reportCPU(b)()
			for i := 0; i < b.N; i++ {
				time.Sleep(time.Second)
			}
			b.ReportMetric(heapPerDevice, "heap-B/device")
		})
		b.Run(fmt.Sprintf("retained/devices=%d", devices), func(b *testing.B) {
			b.ReportAllocs()
			defer reportCPU(b)()
			now := time.Now().Unix()
			n := 0
			for i := 0; i < b.N; i++ {
				for filter, pk := range srv.Topics.Retained.GetAll() {
					expired := pk.ProtocolVersion == 5 && pk.Expiry > 0 && pk.Expiry < now
					enforced := maxExpiry > 0 && now-pk.Created > maxExpiry
					if expired || enforced {
						srv.Topics.Retained.Delete(filter)
					}
					n++
				}
			}
			b.ReportMetric(float64(n)/float64(b.N), "messages-swept/op")
		})
		b.Run(fmt.Sprintf("clients/devices=%d", devices), func(b *testing.B) {
			b.ReportAllocs()
			defer reportCPU(b)()
			now := time.Now().Unix()
			for i := 0; i < b.N; i++ {
				for _, cl := range srv.Clients.GetAll() { // clearExpiredClients
					if d := cl.StopTime(); d != 0 && d < now-1e9 {
						b.Fatal("expired")
					}
				}
				for _, cl := range srv.Clients.GetAll() { // clearExpiredInflights
					cl.ClearExpiredInflights(now, maxExpiry)
				}
			}
		})
		_ = brk.Close()
	}
}

// reportCPU reports the process's CPU time per op (user + system, garbage collection included),
// which on a shared machine says more than the wall time: call its result when the loop ends.
func reportCPU(b *testing.B) func() {
	cpu := func() time.Duration {
		var ru syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	c0 := cpu()
	return func() {
		b.ReportMetric(float64((cpu()-c0).Milliseconds())/float64(b.N), "cpu-ms/op")
	}
}

// BenchmarkSubscribeRetainedReplay measures a hub (re)start's Subscribe to every device's
// retained status at 100,000 devices: the time Subscribe itself takes (it returns once the
// replay is queued; subscribe-ms/op) and the time until the handler had every message, with the
// heap the replay lists take at their largest (replay-B/topic).
func BenchmarkSubscribeRetainedReplay(b *testing.B) {
	const devices = 100_000
	brk, err := New(Config{Addr: "127.0.0.1:0", Auth: newTableAuth(), Logger: testhelp.Logger(b, slog.LevelWarn)})
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = brk.Close() }()
	payload := make([]byte, 300)
	for i := 0; i < devices; i++ {
		if err := brk.Publish(fmt.Sprintf("dl/v1/dev/edge-%06d/status", i), payload, true, 1); err != nil {
			b.Fatal(err)
		}
	}
	var subscribe time.Duration
	var replayBytes float64
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var got atomic.Int64
		done := make(chan struct{})
		gate := make(chan struct{})
		t0 := time.Now()
		if err := brk.Subscribe("dl/v1/dev/+/status", func(string, []byte) {
			<-gate
			if got.Add(1) == devices {
				close(done)
			}
		}); err != nil {
			b.Fatal(err)
		}
		subscribe += time.Since(t0)
		b.StopTimer()
		runtime.GC() // the handlers are held at the gate: the replay lists are full
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		before := ms.HeapAlloc
		brk.disp.mu.RLock()
		n := 0
		for _, w := range brk.disp.workers {
			w.mu.Lock()
			n += len(w.replay) - w.head
			w.mu.Unlock()
		}
		brk.disp.mu.RUnlock()
		if n < devices-len(brk.disp.workers) {
			b.Fatalf("%d replay entries queued, want %d", n, devices)
		}
		b.StartTimer()
		close(gate)
		<-done
		b.StopTimer()
		runtime.GC()
		runtime.ReadMemStats(&ms)
		if before > ms.HeapAlloc {
			replayBytes += float64(before-ms.HeapAlloc) / devices
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(subscribe.Milliseconds())/float64(b.N), "subscribe-ms/op")
	b.ReportMetric(replayBytes/float64(b.N), "replay-B/topic")
}
