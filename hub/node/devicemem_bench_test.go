package node_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/driftline/driftline/hub/node/nodetest"
	"github.com/driftline/driftline/internal/gcpace"
	"github.com/driftline/driftline/internal/procstat"
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
//
// DRIFTLINE_BENCH_DEVICES sets the number of devices (default 300; above ~2,000 take the
// heavy-run lock, docs/benchmarks.md); DRIFTLINE_BENCH_PROFILE_DIR, when set, receives the
// heap (in use after the collections) and goroutine profiles taken with the devices connected.
func BenchmarkHubMemoryPerDevice(b *testing.B) {
	devices := benchDevices(b, 300)
	if os.Getenv("DRIFTLINE_BENCH_PROFILE_DIR") != "" {
		defer func(rate int) { runtime.MemProfileRate = rate }(runtime.MemProfileRate)
		runtime.MemProfileRate = 1 // every allocation: the per-device structures are small
	}
	for range b.N {
		b.StopTimer()
		h := nodetest.Start(b)
		h.WaitTrust()
		topics, err := wire.NewTopics(wire.DefaultPrefix)
		if err != nil {
			b.Fatal(err)
		}
		tokens := enrollDevices(b, h, devices)
		addr := strings.TrimPrefix(h.MQTTURL(), "tcp://")
		before := memNow()
		b.StartTimer()
		conns := make([]net.Conn, devices)
		for i := range conns {
			conns[i] = connectDevice(b, addr, topics, benchDeviceID(i), tokens[i])
		}
		b.StopTimer()
		waitOnline(b, h, devices)
		after := memNow()
		b.ReportMetric(float64(after.heap-before.heap)/float64(devices), "heap-B/device")
		b.ReportMetric(float64(after.stacks-before.stacks)/float64(devices), "stack-B/device")
		b.ReportMetric(float64(after.goroutines-before.goroutines)/float64(devices), "goroutines/device")
		writeProfiles(b, "mem")
		// What a publish leaves: each device publishes its status again (QoS 1) and waits for
		// the PUBACK, with the collector off, so the stacks mochi's packet handling grew are
		// still that size (the next collections halve them again, down to what the goroutine
		// uses at rest).
		gc := debug.SetGCPercent(-1)
		busy0 := stackNow()
		for i, c := range conns {
			republishStatus(b, c, topics, benchDeviceID(i))
		}
		busy := stackNow()
		debug.SetGCPercent(gc)
		b.ReportMetric(float64(busy-busy0)/float64(devices), "stack-grown-B/device")
		for _, c := range conns {
			c.Close()
		}
	}
}

// benchDevices returns DRIFTLINE_BENCH_DEVICES, or def.
func benchDevices(b *testing.B, def int) int {
	if s := os.Getenv("DRIFTLINE_BENCH_DEVICES"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			b.Fatalf("DRIFTLINE_BENCH_DEVICES=%q: want a positive integer", s)
		}
		return n
	}
	return def
}

func benchDeviceID(i int) string { return fmt.Sprintf("mem-%05d", i) }

// enrollDevices enrols n devices, 16 requests at a time, and returns their tokens.
func enrollDevices(b *testing.B, h *nodetest.Hub, n int) []string {
	tokens := make([]string, n)
	errs := make(chan error, n)
	next := make(chan int)
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for i := range next {
				res, err := h.Client.Do(h.NewRequest(http.MethodPost, "/api/v1/devices", map[string]any{"id": benchDeviceID(i)}))
				if err != nil {
					errs <- err
					continue
				}
				var dev struct {
					Token string `json:"token"`
				}
				err = json.NewDecoder(res.Body).Decode(&dev)
				res.Body.Close()
				if res.StatusCode != http.StatusCreated || err != nil || dev.Token == "" {
					errs <- fmt.Errorf("enrol %s: %s (%v)", benchDeviceID(i), res.Status, err)
					continue
				}
				tokens[i] = dev.Token
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	return tokens
}

// waitOnline waits until the hub lists n devices online.
func waitOnline(b *testing.B, h *nodetest.Hub, n int) {
	testhelp.WaitFor(b, 2*time.Minute, "every device online", func() bool {
		online, cursor := 0, ""
		for {
			var page struct {
				Items []struct {
					Online bool `json:"online"`
				} `json:"items"`
				NextCursor *string `json:"next_cursor"`
			}
			h.Call("GET", "/api/v1/devices?limit=1000&cursor="+url.QueryEscape(cursor), nil, 200, &page)
			for _, d := range page.Items {
				if d.Online {
					online++
				}
			}
			if page.NextCursor == nil || *page.NextCursor == "" || *page.NextCursor == cursor {
				return online == n
			}
			cursor = *page.NextCursor
		}
	})
}

// writeProfiles writes the heap and goroutine profiles to DRIFTLINE_BENCH_PROFILE_DIR, if set,
// as {name}-heap.pb.gz and {name}-goroutine.txt.
func writeProfiles(b *testing.B, name string) {
	dir := os.Getenv("DRIFTLINE_BENCH_PROFILE_DIR")
	if dir == "" {
		return
	}
	for _, p := range []struct {
		prof, file string
		debug      int
	}{{"heap", name + "-heap.pb.gz", 0}, {"goroutine", name + "-goroutine.txt", 1}} {
		f, err := os.Create(filepath.Join(dir, p.file))
		if err != nil {
			b.Fatal(err)
		}
		if err := pprof.Lookup(p.prof).WriteTo(f, p.debug); err != nil {
			b.Fatal(err)
		}
		f.Close()
	}
}

type memFigures struct{ heap, stacks, goroutines, rss int64 }

// stackNow is the goroutine stacks in use, without a collection.
func stackNow() int64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.StackInuse)
}

// republishStatus publishes id's retained status again at QoS 1 (packet id 3) and reads c until
// its PUBACK arrives.
func republishStatus(tb testing.TB, c net.Conn, topics wire.Topics, id string) {
	tb.Helper()
	st, _ := json.Marshal(wire.Status{Header: wire.Header{DeviceID: id, TS: time.Now().UnixMilli()}, Online: true, AgentVersion: "bench", Reason: "connect"})
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1, Retain: true}, ProtocolVersion: 4, PacketID: 3,
		TopicName: topics.Status(id), Payload: st}
	var buf bytes.Buffer
	if err := pk.PublishEncode(&buf); err != nil {
		tb.Fatal(err)
	}
	if _, err := c.Write(buf.Bytes()); err != nil {
		tb.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	defer c.SetReadDeadline(time.Time{})
	r := bufio.NewReader(c)
	for {
		fh, err := r.ReadByte()
		if err != nil {
			tb.Fatalf("%s: waiting for the PUBACK: %v", id, err)
		}
		n, _, err := packets.DecodeLength(r)
		if err != nil {
			tb.Fatalf("%s: %v", id, err)
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(r, body); err != nil {
			tb.Fatalf("%s: %v", id, err)
		}
		if fh>>4 == packets.Puback && n >= 2 && body[0] == 0 && body[1] == 3 {
			return
		}
	}
}

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

// BenchmarkHubSteadyCPU measures the hub's steady CPU for connected devices that heartbeat:
// devices bare sockets (as in BenchmarkHubMemoryPerDevice) connect, then each sends a
// heartbeat every 10 s (the agent's default), spread evenly, for DRIFTLINE_BENCH_WINDOW
// (default 30 s). The process's CPU time over the window (the hub, the sender's few writes and
// the collector, at `hub serve`'s GOGC of 50) is reported in cores, beside the same window
// with the devices enrolled but not connected, and the difference per 1,000 devices; and the
// goroutine stacks the process holds at the end of each window (no forced collection), the
// difference per device; with the heap in use and the process's RSS held the same way, the
// collections in the window, their CPU (all of it, and the part of the collector's idle-priority
// workers), the heap live at the last collection and what it scanned. The process collects as
// `hub serve` does: GOGC 50 and at least every gcpace.DefaultInterval;
// DRIFTLINE_BENCH_GOGC and DRIFTLINE_BENCH_GC_INTERVAL (0s: the runtime's pacing only) change
// them.
// DRIFTLINE_BENCH_DEVICES sets the number of devices (default 1,000); with
// DRIFTLINE_BENCH_PROFILE_DIR the connected window's CPU profile is written there
// (cpu-steady.pb.gz).
func BenchmarkHubSteadyCPU(b *testing.B) {
	devices := benchDevices(b, 1000)
	window := 30 * time.Second
	if s := os.Getenv("DRIFTLINE_BENCH_WINDOW"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			b.Fatalf("DRIFTLINE_BENCH_WINDOW=%q: want a positive duration", s)
		}
		window = d
	}
	gcPercent, gcInterval := 50, gcpace.DefaultInterval
	if v := os.Getenv("DRIFTLINE_BENCH_GOGC"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			b.Fatalf("DRIFTLINE_BENCH_GOGC=%q: want an integer", v)
		}
		gcPercent = n
	}
	if v := os.Getenv("DRIFTLINE_BENCH_GC_INTERVAL"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			b.Fatalf("DRIFTLINE_BENCH_GC_INTERVAL=%q: want a duration (0s: none)", v)
		}
		gcInterval = d
	}
	defer debug.SetGCPercent(debug.SetGCPercent(gcPercent))
	for range b.N {
		b.StopTimer()
		h := nodetest.Start(b)
		h.WaitTrust()
		topics, err := wire.NewTopics(wire.DefaultPrefix)
		if err != nil {
			b.Fatal(err)
		}
		tokens := enrollDevices(b, h, devices)
		ctx, stopPace := context.WithCancel(context.Background())
		go gcpace.Run(ctx, gcInterval)
		idle := cpuOver(window, nil)
		memIdle := memHeld()
		addr := strings.TrimPrefix(h.MQTTURL(), "tcp://")
		conns := make([]net.Conn, devices)
		for i := range conns {
			conns[i] = connectDevice(b, addr, topics, benchDeviceID(i), tokens[i])
		}
		waitOnline(b, h, devices)
		var prof *os.File
		if dir := os.Getenv("DRIFTLINE_BENCH_PROFILE_DIR"); dir != "" {
			if prof, err = os.Create(filepath.Join(dir, "cpu-steady.pb.gz")); err != nil {
				b.Fatal(err)
			}
			if err := pprof.StartCPUProfile(prof); err != nil {
				b.Fatal(err)
			}
		}
		gc0 := gcNow()
		b.StartTimer()
		steady := cpuOver(window, func(stop <-chan struct{}) { heartbeats(b, conns, topics, stop) })
		b.StopTimer()
		memSteady := memHeld()
		gc := gcNow().since(gc0)
		stopPace()
		if prof != nil {
			pprof.StopCPUProfile()
			prof.Close()
		}
		b.ReportMetric(idle, "idle-cores")
		b.ReportMetric(steady, "steady-cores")
		b.ReportMetric((steady-idle)/float64(devices)*1000, "cores/1000-devices")
		b.ReportMetric(float64(memSteady.stacks-memIdle.stacks)/float64(devices), "held-stack-B/device")
		b.ReportMetric(float64(memSteady.heap-memIdle.heap)/float64(devices), "held-heap-B/device")
		b.ReportMetric(float64(memSteady.rss-memIdle.rss)/float64(devices), "rss-B/device")
		b.ReportMetric(float64(memSteady.rss)/(1<<20), "rss-MiB")
		b.ReportMetric(float64(memSteady.heap)/(1<<20), "heap-inuse-MiB")
		b.ReportMetric(float64(memSteady.stacks)/(1<<20), "stacks-MiB")
		b.ReportMetric(gc.cycles/window.Seconds(), "gc/s")
		b.ReportMetric(gc.cpu/window.Seconds(), "gc-cores")
		b.ReportMetric(gc.idle/window.Seconds(), "gc-idle-cores")
		if gc.cycles > 0 {
			b.ReportMetric(gc.cpu/gc.cycles*1000, "gc-ms/cycle")
		}
		scan := gcScan()
		b.ReportMetric(float64(scan[0])/(1<<20), "live-heap-MiB")
		b.ReportMetric(float64(scan[1])/(1<<20), "scan-heap-MiB")
		b.ReportMetric(float64(scan[2])/(1<<20), "scan-stack-MiB")
		for _, c := range conns {
			c.Close()
		}
	}
}

// memHeld is the heap spans and stacks in use and the process's resident set as the process runs
// (no forced collection): what the process holds between collections (mochi's readers grown by
// their last publish, the garbage the collector has not reached yet).
func memHeld() memFigures {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	rss, _ := procstat.Memory(os.Getpid())
	return memFigures{heap: int64(m.HeapInuse), stacks: int64(m.StackInuse), goroutines: int64(runtime.NumGoroutine()), rss: rss}
}

// gcFigures are the collections completed and the collector's CPU time, in seconds, so far.
// idle is the part of cpu the collector's idle-priority workers used (time no goroutine wanted).
type gcFigures struct{ cycles, cpu, idle float64 }

func gcNow() gcFigures {
	s := []metrics.Sample{{Name: "/gc/cycles/total:gc-cycles"}, {Name: "/cpu/classes/gc/total:cpu-seconds"},
		{Name: "/cpu/classes/gc/mark/idle:cpu-seconds"}}
	metrics.Read(s)
	return gcFigures{cycles: float64(s[0].Value.Uint64()), cpu: s[1].Value.Float64(), idle: s[2].Value.Float64()}
}

func (g gcFigures) since(o gcFigures) gcFigures {
	return gcFigures{g.cycles - o.cycles, g.cpu - o.cpu, g.idle - o.idle}
}

// gcScan is the heap live at the last collection, the scannable heap and the scannable stacks,
// in bytes.
func gcScan() [3]uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/gc/scan/heap:bytes"}, {Name: "/gc/scan/stack:bytes"}}
	metrics.Read(s)
	return [3]uint64{s[0].Value.Uint64(), s[1].Value.Uint64(), s[2].Value.Uint64()}
}

// cpuOver runs work (nil: nothing) for d, stops it, and returns the process's CPU time over that
// wall time, in cores.
func cpuOver(d time.Duration, work func(stop <-chan struct{})) float64 {
	stop, done := make(chan struct{}), make(chan struct{})
	start, t0 := processCPU(), time.Now()
	go func() {
		defer close(done)
		if work != nil {
			work(stop)
		}
	}()
	time.Sleep(d) // the measured window itself, not a synchronisation
	close(stop)
	<-done
	return (processCPU() - start).Seconds() / time.Since(t0).Seconds()
}

// processCPU is the process's user and system CPU time so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// heartbeats sends each connection's device a heartbeat every 10 s, spread evenly over the
// interval, until stop.
func heartbeats(b *testing.B, conns []net.Conn, topics wire.Topics, stop <-chan struct{}) {
	tick := time.NewTicker(10 * time.Second / time.Duration(len(conns)))
	defer tick.Stop()
	start := time.Now()
	for i := 0; ; i = (i + 1) % len(conns) {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		id := benchDeviceID(i)
		hb, _ := json.Marshal(wire.Heartbeat{Header: wire.Header{DeviceID: id, TS: time.Now().UnixMilli()}, AgentVersion: "bench",
			UptimeS: int64(time.Since(start).Seconds()), ActiveModels: []string{}})
		pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}, ProtocolVersion: 4, TopicName: topics.Heartbeat(id), Payload: hb}
		var buf bytes.Buffer
		if err := pk.PublishEncode(&buf); err != nil {
			b.Error(err)
			return
		}
		if _, err := conns[i].Write(buf.Bytes()); err != nil {
			b.Error(err)
			return
		}
	}
}
