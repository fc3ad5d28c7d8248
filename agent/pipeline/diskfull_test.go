package pipeline_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/driftline/driftline/agent"
	"github.com/driftline/driftline/agent/agenttest"
	"github.com/driftline/driftline/agent/config"
	"github.com/driftline/driftline/agent/devicedb"
	"github.com/driftline/driftline/agent/outbox"
	"github.com/driftline/driftline/agent/pipeline"
	"github.com/driftline/driftline/internal/freeport"
	"github.com/driftline/driftline/internal/testhelp"
	"github.com/driftline/driftline/shared/wire"
)

// smallDisk mounts a tmpfs of size bytes on a temp dir and returns it, or returns a plain temp
// dir (saying so loudly) when mounting is not allowed here. The caps under test hold either way;
// on the tmpfs the test also checks that they keep the agent's database inside a small disk.
func smallDisk(t *testing.T, size int64) (dir string, mounted bool) {
	dir = t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d", size)); err != nil {
		t.Logf("SMALL DISK NOT MOUNTED (%v): the caps are checked on the ordinary temp dir", err)
		return dir, false
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir, true
}

// fill writes a file on dir's file system so that only free bytes stay free.
func fill(t *testing.T, dir string, free int64) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	avail := int64(st.Bavail) * st.Bsize
	f, err := os.Create(filepath.Join(dir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 1<<20)
	for left := avail - free; left > 0; left -= int64(len(chunk)) {
		if _, err := f.Write(chunk[:min(int64(len(chunk)), left)]); err != nil {
			t.Fatalf("fill the small disk: %v", err)
		}
	}
}

func usedBytes(t *testing.T, dir string) int64 {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Blocks-st.Bfree) * st.Bsize
}

// TestDiskAlmostFull runs the agent with its state on a small disk (a 96 MiB tmpfs filled but for
// 8 MiB, when this machine allows mounting) and its quarantine and report buffer capped at their minimum
// (64 KiB each; the quarantine at 50 rows), cut off from its broker while 2,000 rows (half of
// them invalid) flow through the pipeline. Both stores hit their caps and say so in metrics
// (driftline_agent_quarantine_evicted_total, driftline_agent_buffer_dropped_total{reason="size"}),
// every row is still validated, the database stays within the disk, and once the broker is
// reachable the newest reports arrive, carrying the quarantine's eviction count.
func TestDiskAlmostFull(t *testing.T) {
	disk, mounted := smallDisk(t, 96<<20)
	if mounted {
		fill(t, disk, 8<<20) // almost full: 8 MiB left for the agent's database
	}
	dir := t.TempDir()
	contractPath := filepath.Join(dir, "contract.json")
	if err := os.WriteFile(contractPath, []byte(`{"fields":[{"name":"temp","type":"number","constraints":{"required":true,"maximum":100}}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	port := freeport.Port(t) // the broker listens there later
	const id = "edge-full"
	cfg := config.Default()
	cfg.DeviceID, cfg.Token, cfg.Brokers = id, "t", []string{fmt.Sprintf("tcp://127.0.0.1:%d", port)}
	cfg.TrustedKeys = []string{"3q2+7wAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}
	cfg.StateDir, cfg.ModelDir, cfg.Metrics = filepath.Join(disk, "state"), filepath.Join(disk, "models"), config.MetricsOff
	cfg.Contract, cfg.Window.Rows = contractPath, 10
	cfg.Quarantine.MaxRows, cfg.Quarantine.MaxBytes = 50, 64<<10
	cfg.Buffer.MaxBytes = 64 << 10
	db, err := devicedb.Open(cfg.StateDir)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	reg := prometheus.NewRegistry()
	a, err := agent.New(cfg, db.Root(), agent.Options{Logger: slog.New(slog.DiscardHandler), Registerer: reg, Gatherer: reg,
		ConnectBackoff: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	pl, err := pipeline.Attach(a, pipeline.AttachOptions{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() { cancel(); <-done }()

	const windows, rows = 200, 10
	for w := 0; w < windows; w++ {
		var b strings.Builder
		b.WriteString("[")
		for r := 0; r < rows; r++ {
			if r > 0 {
				b.WriteString(",")
			}
			temp := 20 + r
			if r%2 == 1 {
				temp = 500 + w // invalid: over the maximum, a value unique to the window
			}
			fmt.Fprintf(&b, `{"temp":%d}`, temp)
		}
		b.WriteString("]")
		if _, err := pl.IngestPayload("mqtt", []byte(b.String())); err != nil {
			t.Fatal(err)
		}
	}
	pl.Flush()
	st := pl.Stats()
	buf := a.BufferStats()
	evicted := agenttest.Metric(t, reg, "driftline_agent_quarantine_evicted_total")
	dropped := agenttest.Metric(t, reg, outbox.MetricDropped, "reason", "size")
	t.Logf("small disk mounted: %v; %d rows seen, %d invalid; quarantine %d rows, %d evicted (metric %v); buffer %d reports, %d bytes, %v dropped for size; disk used %d bytes",
		mounted, st.RecordsSeen, st.RecordsInvalid, st.QuarantineDepth, st.QuarantineEvicted, evicted, buf.Depth, buf.Bytes, dropped, usedBytes(t, disk))
	if st.RecordsSeen != windows*rows || st.RecordsInvalid != windows*rows/2 {
		t.Fatalf("validated %d rows (%d invalid), want %d (%d): the pipeline stopped validating at a cap", st.RecordsSeen, st.RecordsInvalid, windows*rows, windows*rows/2)
	}
	if st.QuarantineDepth > 50 || st.QuarantineEvicted == 0 || evicted != float64(st.QuarantineEvicted) {
		t.Fatalf("quarantine %d rows, %d evicted, metric %v: want at most 50 held and the evictions counted", st.QuarantineDepth, st.QuarantineEvicted, evicted)
	}
	if buf.Bytes > int64(cfg.Buffer.MaxBytes) || dropped == 0 {
		t.Fatalf("buffer %d bytes (cap %d), %v dropped for size: want the cap held and the drops counted", buf.Bytes, cfg.Buffer.MaxBytes, dropped)
	}
	if mounted {
		var fs syscall.Statfs_t
		if err := syscall.Statfs(disk, &fs); err != nil {
			t.Fatal(err)
		}
		if fs.Bavail == 0 {
			t.Fatalf("the small disk is full (%d bytes used)", usedBytes(t, disk))
		}
	}

	// The broker comes back: what the buffer kept is sent, the newest window last.
	var mu sync.Mutex
	var got []wire.Validation
	s := mqtt.New(&mqtt.Options{InlineClient: true, Logger: slog.New(slog.DiscardHandler)})
	if err := s.AddHook(new(auth.AllowHook), nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Subscribe(wire.Default().Validation(id), 1, func(_ *mqtt.Client, _ packets.Subscription, pk packets.Packet) {
		v, err := wire.DecodeValidation(pk.Payload)
		if err != nil {
			t.Errorf("bad validation report: %v", err)
			return
		}
		mu.Lock()
		got = append(got, v)
		mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.AddListener(listeners.NewTCP(listeners.Config{ID: "t", Address: fmt.Sprintf("127.0.0.1:%d", port)})); err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Serve() }()
	defer s.Close()
	testhelp.WaitFor(t, 30*time.Second, "the newest window's report", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) > 0 && got[len(got)-1].Index == windows
	})
	mu.Lock()
	last := got[len(got)-1]
	n := len(got)
	mu.Unlock()
	t.Logf("%d reports delivered after the outage; the last (window %d) says %d rows quarantined, %d evicted", n, last.Index, last.Quarantined, last.QuarantineEvicted)
	if last.QuarantineEvicted == 0 {
		t.Fatal("the last report does not carry the quarantine's evictions")
	}
}
