package protocol

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/driftline/driftline/hub/command"
	"github.com/driftline/driftline/hub/state"
	"github.com/driftline/driftline/hub/state/statetest"
	"github.com/driftline/driftline/internal/testhelp"
	"github.com/driftline/driftline/shared/artifact"
	"github.com/driftline/driftline/shared/wire"
	"github.com/driftline/driftline/shared/zstdx"
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
	req := func(id, shared string) []byte { return fetchPayload(t, id, "r-"+id, shared, digest) }
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

// failOnce is a transport whose first publish fails (the external broker's window full for
// its timeout, or the connection down); it records the topics published after.
type failOnce struct {
	recorder
	failed bool
}

func (f *failOnce) Publish(topic string, p []byte, retain bool, qos byte) error {
	f.mu.Lock()
	if !f.failed {
		f.failed = true
		f.mu.Unlock()
		return errors.New("timed out waiting for the broker to acknowledge earlier messages")
	}
	f.mu.Unlock()
	return f.recorder.Publish(topic, p, retain, qos)
}

// TestSharedPublishFailureIsPublishedAgain: a shared publish the transport refuses goes out
// again (no sooner than SharedGap) without any device asking again: the wave's devices that
// waited for it listen still, and the next request of theirs would be a retry on their own
// topic, the whole model per device.
func TestSharedPublishFailureIsPublishedAgain(t *testing.T) {
	st := statetest.New(t)
	plain := []byte("one chunk of a model")
	z := zstdx.Encode(nil, plain)
	digest := artifact.DigestOf(plain)
	st.Must(t, command.TypeChunksPut, state.ChunksPut{Chunks: []state.Chunk{{Digest: digest, Size: int64(len(plain)), Zstd: z}}})
	tr := &failOnce{}
	s := &Service{cfg: Config{Transport: tr, Reader: st.Reader(), Topics: wire.Default(), SharedDelay: 10 * time.Millisecond,
		SharedWait: 20 * time.Millisecond, SharedGap: 50 * time.Millisecond}, log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		m: newMetrics(prometheus.NewRegistry())}
	s.shared = newSharedFanout(s)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.shared.run(ctx) }()
	defer func() { cancel(); <-done }()
	for i := range 3 {
		s.shared.want(fmt.Sprintf("d%d", i), "m", fmt.Sprintf("s%d", i), digest, time.Now())
	}
	testhelp.WaitFor(t, 10*time.Second, "the shared chunk published after the failed attempt", func() bool {
		return tr.last(wire.Default().ModelChunk("m")) != nil
	})
}
