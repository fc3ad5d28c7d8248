package protocol

import (
	"fmt"
	"io"
	"log/slog"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/driftline/driftline/shared/wire"
)

// TestSharedRequestsNotDroppedBehindPerDeviceServing: the fetch workers publish per-device
// chunks (a 1 MiB model is 16 frames through the broker connection's window) and can be held up
// for seconds; while their queue is full, a request naming the shared topic, which only books
// the device into the wave's publish, still gets in. Dropped, as at 100,000 devices when the
// queue was full of retries, the device waited its shared deadline out and asked for the whole
// model per device (docs/benchmarks.md, run d).
func TestSharedRequestsNotDroppedBehindPerDeviceServing(t *testing.T) {
	s := &Service{cfg: Config{FetchQueue: 2, PerDeviceQueued: 8}, log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		m: newMetrics(prometheus.NewRegistry()), queued: map[string]int{}}
	s.makeFetchQueues()
	const digest = "sha256:0000000000000000000000000000000000000000000000000000000000000000"
	req := func(id, shared string) []byte {
		r := wire.FetchRequest{Header: wire.Header{DeviceID: id, TS: 1}, RequestID: "r-" + id, Digests: []string{digest}}
		if shared != "" {
			r.Shared, r.SharedSub = shared, "sub-"+id
		}
		b, err := wire.Encode(r)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	// No worker runs: the per-device queue fills and then drops, as when the workers wait on
	// the broker.
	dropped := 0
	for i := range 4 {
		if !s.enqueueFetch(fmt.Sprintf("retry-%d", i), req(fmt.Sprintf("retry-%d", i), "")) {
			dropped++
		}
	}
	if dropped != 2 {
		t.Fatalf("%d of 4 per-device requests dropped with a queue of 2; want 2 (the setup should fill the queue)", dropped)
	}
	for i := range 2 {
		id := fmt.Sprintf("wave-%d", i)
		if !s.enqueueFetch(id, req(id, "m")) {
			t.Fatalf("shared request %d dropped behind a full per-device queue", i)
		}
	}
}
