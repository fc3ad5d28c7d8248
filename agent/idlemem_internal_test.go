package agent

import (
	"io"
	"log/slog"
	"runtime"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/driftline/driftline/agent/config"
	"github.com/driftline/driftline/shared/wire"
)

// TestIdleConnMemory bounds what one device's MQTT connection keeps while nothing arrives: its
// queues between the MQTT handler and the agent's goroutines hold memory for what they hold, not
// for their bound. With buffered channels of 1,024 []byte (chunk topic, shared chunk topic,
// data topic) a connection held 72 KiB from its creation; 10,000 fleet agents held 720 MiB of
// them, all scanned by every garbage collection.
func TestIdleConnMemory(t *testing.T) {
	cfg := config.Config{DeviceID: "mem-1", Brokers: []string{"tcp://127.0.0.1:1"}}
	topics := wire.Default()
	m, err := newMetrics(prometheus.NewRegistry(), "test", false)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	const n = 200
	conns := make([]*conn, n)
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := range conns {
		if conns[i], err = newConn(cfg, topics, m, log, time.Now(), "test", pacing{netMin: time.Second, netMax: time.Second, refusedMin: time.Second, refusedMax: time.Second}); err != nil {
			t.Fatal(err)
		}
	}
	runtime.ReadMemStats(&after)
	per := (after.TotalAlloc - before.TotalAlloc) / n
	t.Logf("an idle connection allocates %d bytes", per)
	if per > 24<<10 {
		t.Fatalf("an idle connection allocates %d bytes; want at most 24 KiB", per)
	}
	runtime.KeepAlive(conns)
}
