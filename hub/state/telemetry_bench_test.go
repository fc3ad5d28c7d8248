package state

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"testing"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/pb"

	"github.com/driftline/driftline/hub/command"
)

// BenchmarkTelemetryApply applies telemetry batches of 100 devices (a heartbeat and a health
// summary each, as hub/protocol batches them every second) to devices with labels, a desired
// model and a reported state, and reports the bytes of keys and values the batch writes
// (bytes/batch, counted from badger's change stream) and the time to apply it.
func BenchmarkTelemetryApply(b *testing.B) {
	const devices, batch = 1000, 100
	h := newHarness(&testing.T{})
	defer h.db.Close()
	seedRegistry(h)
	h.must(command.TypeModelVersionApprove, "bob", ModelVersionApprove{Model: "m", Version: 1, Signature: Signature{KeyID: "k", Sig: "s"}})
	one := 1
	for i := range devices {
		id := fmt.Sprintf("dev-%05d", i)
		h.must(command.TypeDeviceCreate, "hub", DeviceCreate{ID: id, TokenHash: "h" + id,
			Labels: map[string]string{"site": "plant-a", "line": fmt.Sprint(i % 7), "hw": "rpi4"}})
		h.must(command.TypeDeviceDesiredSet, "hub", DeviceDesiredSet{ID: id, Model: "m", Version: 1})
		h.must(command.TypeDeviceTelemetry, "hub", DeviceTelemetry{Devices: []DeviceObservation{{ID: id, LastSeen: h.now,
			Reported: &Reported{Rev: 1, AgentVersion: "1.4.0", Models: map[string]ReportedModel{"m": {Active: &one, State: "active"}}}}}})
	}
	// Bytes written are counted from badger's change stream; a sentinel key written after the
	// batches (each time with a new value) tells when the stream has delivered them.
	var mu sync.Mutex
	cond := sync.NewCond(&mu)
	var written int64
	last := ""
	const sentinel = "fsm/zz-bench-sentinel"
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		_ = h.db.Subscribe(ctx, func(kvs *pb.KVList) error {
			mu.Lock()
			defer mu.Unlock()
			for _, kv := range kvs.Kv {
				if string(kv.Key) == sentinel {
					last = string(kv.Value)
					cond.Broadcast()
					continue
				}
				written += int64(len(kv.Key) + len(kv.Value))
			}
			return nil
		}, []pb.Match{{Prefix: []byte("fsm/")}})
	}()
	gen := 0
	put := func() string {
		gen++
		v := fmt.Sprint(gen)
		_ = h.db.Update(func(txn *badger.Txn) error { return txn.Set([]byte(sentinel), []byte(v)) })
		return v
	}
	// The subscription starts on its own goroutine: write sentinels until it shows one.
	for {
		put()
		mu.Lock()
		live := last != ""
		mu.Unlock()
		if live {
			break
		}
		runtime.Gosched()
	}
	// sync waits until everything written before it was counted.
	sync := func() {
		v := put()
		mu.Lock()
		for last != v {
			cond.Wait()
		}
		mu.Unlock()
	}
	sync()
	mu.Lock()
	written = 0
	mu.Unlock()
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		var obs []DeviceObservation
		for j := range batch {
			id := fmt.Sprintf("dev-%05d", (n*batch+j)%devices)
			obs = append(obs, DeviceObservation{ID: id, LastSeen: h.now,
				Health: &HealthSummary{Model: "m", Version: 1, Rows: 60, Invalid: 1, DriftShare: 0.05, At: h.now}})
		}
		h.must(command.TypeDeviceTelemetry, "hub", DeviceTelemetry{Devices: obs})
	}
	b.StopTimer()
	sync()
	mu.Lock()
	b.ReportMetric(float64(written)/float64(b.N), "bytes/batch")
	mu.Unlock()
}
