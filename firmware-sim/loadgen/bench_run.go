package loadgen

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/driftline/driftline/firmware-sim/hubpage"
	"github.com/driftline/driftline/internal/procstat"
)

// ErrBench is a load test phase that failed.
var ErrBench = errors.New("bench-load")

// startHub starts `driftline hub serve` on the external broker and waits for its admin token
// and a ready API.
func (b *bench) startHub(ctx context.Context) error {
	httpPort, err := freePort()
	if err != nil {
		return err
	}
	raftPort, err := freePort()
	if err != nil {
		return err
	}
	data := filepath.Join(b.dir, "hub")
	b.hubURL = fmt.Sprintf("http://127.0.0.1:%d", httpPort)
	b.hub = exec.Command(b.cfg.Hub, "hub", "serve", "--data", data, "--node-id", "load", "--http", fmt.Sprintf("127.0.0.1:%d", httpPort),
		"--raft", fmt.Sprintf("127.0.0.1:%d", raftPort), "--broker", b.hubBroker, "--mqtt", "",
		"--advertise-mqtt", fmt.Sprintf("tcp://127.0.0.1:%d", b.devPort))
	out, err := os.Create(filepath.Join(b.dir, "hub.log"))
	if err != nil {
		return err
	}
	b.hub.Stdout, b.hub.Stderr = out, out
	if err := b.hub.Start(); err != nil {
		return fmt.Errorf("start hub: %w", err)
	}
	b.hubPid = b.hub.Process.Pid
	b.hubExit = make(chan error, 1)
	go func() { b.hubExit <- b.hub.Wait() }()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		select {
		case err := <-b.hubExit:
			b.hubExit <- err
			return fmt.Errorf("%w: the hub exited: %v (see %s)", ErrBench, err, filepath.Join(b.dir, "hub.log"))
		default:
		}
		if tok, err := os.ReadFile(filepath.Join(data, "admin.token")); err == nil && len(bytes.TrimSpace(tok)) > 0 {
			b.token = strings.TrimSpace(string(tok))
			var root json.RawMessage
			if b.api(ctx, http.MethodGet, "/api/v1/keys/root", nil, &root) == nil && len(root) > 0 {
				break
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: the hub is not ready after 2 minutes (see %s)", ErrBench, filepath.Join(b.dir, "hub.log"))
		}
		if err := sleep(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
	b.logf("hub ready at %s on the broker", b.hubURL)
	return nil
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// stop ends the hub and the broker (SIGTERM, then SIGKILL after 30 s).
func (b *bench) stop() {
	if b.hub != nil && b.hub.Process != nil {
		_ = b.hub.Process.Signal(syscall.SIGTERM)
		select {
		case <-b.hubExit:
		case <-time.After(30 * time.Second):
			_ = b.hub.Process.Kill()
			<-b.hubExit
		}
	}
	if b.mq != nil && b.mq.Process != nil {
		_ = b.mq.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = b.mq.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = b.mq.Process.Kill()
			<-done
		}
	}
}

// samplePeaks samples the hub's and the broker's resident sizes every 500 ms.
func (b *bench) samplePeaks(ctx context.Context) {
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			h, _ := procstat.Memory(b.hubPid)
			m, _ := procstat.Memory(b.mqPid)
			b.mu.Lock()
			b.res.HubPeakRSS, b.res.BrokerPeakRSS = max(b.res.HubPeakRSS, h), max(b.res.BrokerPeakRSS, m)
			b.mu.Unlock()
		}
	}
}

// api calls the hub's API with the admin token; out (when not nil) receives the JSON answer.
func (b *bench) api(ctx context.Context, method, path string, body, out any) error {
	var r io.Reader
	ct := ""
	switch v := body.(type) {
	case nil:
	case *multipart.Writer:
		return errors.New("multipart bodies go through apiRaw")
	default:
		j, err := json.Marshal(v)
		if err != nil {
			return err
		}
		r, ct = bytes.NewReader(j), "application/json"
	}
	return b.apiRaw(ctx, method, path, r, ct, out)
}

// apiLong is api without the client's 60 s timeout (ctx bounds it).
func (b *bench) apiLong(ctx context.Context, method, path string, body, out any) error {
	j, err := json.Marshal(body)
	if err != nil {
		return err
	}
	c := *b.client
	c.Timeout = 0
	return b.apiWith(ctx, &c, method, path, bytes.NewReader(j), "application/json", out)
}

func (b *bench) apiRaw(ctx context.Context, method, path string, body io.Reader, ct string, out any) error {
	return b.apiWith(ctx, b.client, method, path, body, ct, out)
}

func (b *bench) apiWith(ctx context.Context, client *http.Client, method, path string, body io.Reader, ct string, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, b.hubURL+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+b.token)
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("%w: %s %s: %v", ErrBench, method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%w: %s %s: %s: %.500s", ErrBench, method, path, resp.Status, bytes.TrimSpace(raw))
	}
	if out != nil {
		if p, ok := out.(*[]byte); ok {
			*p = raw
			return nil
		}
		return json.Unmarshal(raw, out)
	}
	return nil
}

// enroll creates the devices through POST /api/v1/devices, EnrollWorkers at a time. Their tokens
// are not kept: the load tool connects as its load users.
func (b *bench) enroll(ctx context.Context) ([]string, error) {
	ids := make([]string, b.cfg.Devices)
	for i := range ids {
		ids[i] = fmt.Sprintf("load-%06d", i)
	}
	t0 := time.Now()
	var next, done atomic.Int64
	var firstErr error
	var errOnce sync.Once
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for w := 0; w < b.cfg.EnrollWorkers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(ids) || ctx.Err() != nil {
					return
				}
				if err := b.api(ctx, http.MethodPost, "/api/v1/devices", map[string]any{"id": ids[i], "labels": map[string]string{"fleet": "load", "shard": strconv.Itoa(i % b.cfg.Rollouts)}}, nil); err != nil {
					errOnce.Do(func() { firstErr = err; cancel() })
					return
				}
				if n := done.Add(1); n%10000 == 0 {
					b.logf("%d devices enrolled (%.0f/s)", n, float64(n)/time.Since(t0).Seconds())
				}
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	b.res.Enroll = time.Since(t0)
	b.logf("%d devices enrolled in %s (%.0f/s)", len(ids), b.res.Enroll.Round(time.Millisecond), float64(len(ids))/b.res.Enroll.Seconds())
	return ids, nil
}

// pushModel registers and approves a random model of ModelBytes; it returns its version.
func (b *bench) pushModel(ctx context.Context) (int, error) {
	if err := b.api(ctx, http.MethodPost, "/api/v1/models", map[string]string{"name": "loadm"}, nil); err != nil {
		return 0, err
	}
	art := make([]byte, b.cfg.ModelBytes)
	if _, err := io.ReadFull(randReader{}, art); err != nil {
		return 0, err
	}
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	if err := mw.WriteField("metadata", `{"format":"bench"}`); err != nil {
		return 0, err
	}
	fw, err := mw.CreateFormFile("artifact", "model.bin")
	if err != nil {
		return 0, err
	}
	if _, err := fw.Write(art); err != nil {
		return 0, err
	}
	if err := mw.Close(); err != nil {
		return 0, err
	}
	var out struct {
		Version int `json:"version"`
	}
	if err := b.apiRaw(ctx, http.MethodPost, "/api/v1/models/loadm/versions", &body, mw.FormDataContentType(), &out); err != nil {
		return 0, err
	}
	if err := b.api(ctx, http.MethodPost, fmt.Sprintf("/api/v1/models/loadm/versions/%d/approve", out.Version), map[string]string{"comment": "load test"}, nil); err != nil {
		return 0, err
	}
	return out.Version, nil
}

// startSim starts the load tool for ids and waits until the hub sees every device online.
func (b *bench) startSim(ctx context.Context, ids []string, done chan<- error) error {
	var root []byte
	if err := b.api(ctx, http.MethodGet, "/api/v1/keys/root", nil, &root); err != nil {
		close(done)
		return err
	}
	log := slog.New(slog.NewTextHandler(b.cfg.Log, &slog.HandlerOptions{Level: slog.LevelWarn}))
	sim, err := New(Config{Broker: fmt.Sprintf("tcp://127.0.0.1:%d", b.devPort), Conns: b.devUsers, Devices: ids, Root: root,
		Heartbeat: b.cfg.Heartbeat, Window: b.cfg.Window, Logger: log})
	if err != nil {
		close(done)
		return err
	}
	b.sim = sim
	t0 := time.Now()
	go func() { done <- sim.Run(ctx) }()
	for {
		n, err := b.online(ctx)
		if err == nil && n >= len(ids) {
			break
		}
		if time.Since(t0) > b.cfg.Timeout {
			return fmt.Errorf("%w: %d of %d devices online after %s", ErrBench, n, len(ids), b.cfg.Timeout)
		}
		b.logf("%d of %d devices online after %s", n, len(ids), time.Since(t0).Round(time.Second))
		if err := sleep(ctx, 5*time.Second); err != nil {
			return err
		}
	}
	b.res.Online = time.Since(t0)
	b.logf("all %d devices online after %s", len(ids), b.res.Online.Round(time.Millisecond))
	return nil
}

// online counts the devices the hub shows online.
func (b *bench) online(ctx context.Context) (int, error) {
	return hubpage.CountOnline(ctx, func(ctx context.Context, path string, out any) error {
		return b.api(ctx, http.MethodGet, path, nil, out)
	})
}

// nodeReport is the part of GET /api/v1/node the load test reads.
type nodeReport struct {
	LastLogIndex uint64 `json:"last_log_index"`
	Disk         struct {
		Bytes map[string]int64 `json:"bytes"`
	} `json:"disk"`
}

func (b *bench) node(ctx context.Context) nodeReport {
	var n nodeReport
	_ = b.api(ctx, http.MethodGet, "/api/v1/node", nil, &n)
	return n
}

// metric sums the samples of a metric whose labels contain match ("" for all).
func (b *bench) metric(ctx context.Context, name, match string) float64 {
	var raw []byte
	if err := b.api(ctx, http.MethodGet, "/metrics", nil, &raw); err != nil {
		return 0
	}
	sum, _, _ := hubpage.MetricSamples(bytes.NewReader(raw), name, match)
	return sum
}

// byResult returns the hub's counter name by each of results (its "result" label).
func (b *bench) byResult(ctx context.Context, name string, results []string) map[string]int64 {
	var raw []byte
	if err := b.api(ctx, http.MethodGet, "/metrics", nil, &raw); err != nil {
		return map[string]int64{}
	}
	out := make(map[string]int64, len(results))
	for _, res := range results {
		sum, _, _ := hubpage.MetricSamples(bytes.NewReader(raw), name, `result="`+res+`"`)
		out[res] = int64(sum)
	}
	return out
}

// The hub's fetch counters the report breaks down (hub/protocol's MetricFetchRequests and
// MetricSharedChunkRequests).
var (
	fetchResults  = []string{"served", "dropped", "caught_up", "catch_up_failed", "out_of_scope", "bad"}
	sharedResults = []string{"scheduled", "joined", "deduplicated", "all_listening"}
)

const (
	metricFetchRequests  = "driftline_hub_fetch_requests_total"
	metricSharedChunks   = "driftline_hub_shared_chunk_requests_total"
	metricDeviceMessages = "driftline_hub_device_messages_total"
	metricHeartbeats     = "driftline_hub_heartbeats_total"
)

// published sums the load tool's published messages of every kind.
func published(s Stats) int64 {
	var n int64
	for _, v := range s.Published {
		n += v
	}
	return n
}

// steady measures Steady for cfg.Steady.
func (b *bench) steady(ctx context.Context, what string) (Steady, error) {
	self := os.Getpid()
	h0, m0, l0 := procstat.CPU(b.hubPid), procstat.CPU(b.mqPid), procstat.CPU(self)
	msgs0, n0, t0 := b.metric(ctx, metricDeviceMessages, ""), b.node(ctx), time.Now()
	pub0 := published(b.sim.Stats())
	hbr0, hbl0 := b.metric(ctx, metricHeartbeats, `result="replicated"`), b.metric(ctx, metricHeartbeats, `result="local"`)
	b.logf("measuring the steady state %s for %s", what, b.cfg.Steady)
	if err := sleep(ctx, b.cfg.Steady); err != nil {
		return Steady{}, err
	}
	dt := time.Since(t0).Seconds()
	var s Steady
	s.HubCores = (procstat.CPU(b.hubPid) - h0).Seconds() / dt
	s.BrokerCores = (procstat.CPU(b.mqPid) - m0).Seconds() / dt
	s.LoadCores = (procstat.CPU(self) - l0).Seconds() / dt
	s.HubRSS, _ = procstat.Memory(b.hubPid)
	s.BrokerRSS, _ = procstat.Memory(b.mqPid)
	s.MessagesPerSec = (b.metric(ctx, metricDeviceMessages, "") - msgs0) / dt
	n1 := b.node(ctx)
	s.EntriesPerSec = float64(n1.LastLogIndex-n0.LastLogIndex) / dt
	s.RaftBytesPerSec = float64(n1.Disk.Bytes["raftlog"]-n0.Disk.Bytes["raftlog"]) / dt
	s.OfferedPerSec = float64(published(b.sim.Stats())-pub0) / dt
	s.HeartbeatsReplicated = (b.metric(ctx, metricHeartbeats, `result="replicated"`) - hbr0) / dt
	s.HeartbeatsLocal = (b.metric(ctx, metricHeartbeats, `result="local"`) - hbl0) / dt
	b.logf("steady %s: hub %.2f cores %d MiB, broker %.2f cores %d MiB, load tool %.2f cores, %.0f of %.0f device messages/s, %.1f raft entries/s, %.0f raft log B/s; heartbeats/s %.0f replicated, %.0f local",
		what, s.HubCores, s.HubRSS>>20, s.BrokerCores, s.BrokerRSS>>20, s.LoadCores, s.MessagesPerSec, s.OfferedPerSec, s.EntriesPerSec, s.RaftBytesPerSec,
		s.HeartbeatsReplicated, s.HeartbeatsLocal)
	return s, nil
}

// rolloutView is the part of a rollout the load test reads.
type rolloutView struct {
	ID            string         `json:"id"`
	State         string         `json:"state"`
	Reason        string         `json:"reason"`
	Wave          int            `json:"wave"`
	WaveSizes     []int          `json:"wave_sizes"`
	WaveStartedAt int64          `json:"wave_started_at"`
	UpdatedAt     int64          `json:"updated_at"`
	Devices       map[string]int `json:"devices"`
}

// waveMark is what was seen when a wave of one rollout started (or the rollout ended).
type waveMark struct {
	at         time.Time
	index      uint64
	raft       int64
	lastActive time.Time
}

// rollOut creates the rollouts (Rollouts of them, one per shard of the devices) and follows
// them to their end, wave by wave.
func (b *bench) rollOut(ctx context.Context, version int) error {
	self := os.Getpid()
	h0, m0, l0 := procstat.CPU(b.hubPid), procstat.CPU(b.mqPid), procstat.CPU(self)
	sh0, dv0 := b.metric(ctx, "driftline_hub_chunk_egress_bytes_total", `path="shared"`), b.metric(ctx, "driftline_hub_chunk_egress_bytes_total", `path="device"`)
	f0, c0 := b.byResult(ctx, metricFetchRequests, fetchResults), b.byResult(ctx, metricSharedChunks, sharedResults)
	t0 := time.Now()
	ros, err := b.createRollouts(ctx, version, t0)
	if err != nil {
		return err
	}
	marks, err := b.followRollouts(ctx, ros, t0)
	if err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	r := &b.res
	r.Rollout = time.Since(t0)
	r.Counts = map[string]int{}
	states := map[string]int{}
	for _, ro := range ros {
		states[ro.State]++
		for k, v := range ro.Devices {
			r.Counts[k] += v
		}
	}
	r.State = countsLine(states)
	r.HubCPU, r.BrokerCPU, r.LoadCPU = procstat.CPU(b.hubPid)-h0, procstat.CPU(b.mqPid)-m0, procstat.CPU(self)-l0
	r.EgressShared = int64(b.metric(ctx, "driftline_hub_chunk_egress_bytes_total", `path="shared"`) - sh0)
	r.EgressDevice = int64(b.metric(ctx, "driftline_hub_chunk_egress_bytes_total", `path="device"`) - dv0)
	r.Fetches, r.SharedChunks = b.byResult(ctx, metricFetchRequests, fetchResults), b.byResult(ctx, metricSharedChunks, sharedResults)
	for k := range r.Fetches {
		r.Fetches[k] -= f0[k]
	}
	for k := range r.SharedChunks {
		r.SharedChunks[k] -= c0[k]
	}
	r.Waves = b.waveFigures(ros, marks)
	b.logf("rollouts %s after %s: hub CPU %.1f s, broker %.1f s, load tool %.1f s; chunk egress shared %d B, per device %d B",
		r.State, r.Rollout.Round(time.Millisecond), r.HubCPU.Seconds(), r.BrokerCPU.Seconds(), r.LoadCPU.Seconds(), r.EgressShared, r.EgressDevice)
	return nil
}

// createRollouts creates one rollout of version per shard of the devices (one when Rollouts is 1).
func (b *bench) createRollouts(ctx context.Context, version int, t0 time.Time) ([]rolloutView, error) {
	ros := make([]rolloutView, b.cfg.Rollouts)
	for j := range ros {
		sel := "fleet=load"
		if b.cfg.Rollouts > 1 {
			sel += ",shard=" + strconv.Itoa(j)
		}
		cctx, cancel := context.WithTimeout(ctx, b.cfg.Timeout) // planning reads every device
		err := b.apiLong(cctx, http.MethodPost, "/api/v1/rollouts", map[string]any{"model": "loadm", "version": version, "selector": sel,
			"waves": b.cfg.Waves, "bake_seconds": int(b.cfg.Bake.Seconds()), "device_timeout_seconds": int(b.cfg.Timeout.Seconds())}, &ros[j])
		cancel()
		if err != nil {
			return nil, fmt.Errorf("create a rollout to %d devices: %w", b.cfg.Devices/b.cfg.Rollouts, err)
		}
		b.logf("rollout %s (%s) created after %s: waves %v", ros[j].ID, sel, time.Since(t0).Round(time.Millisecond), ros[j].WaveSizes)
	}
	return ros, nil
}

// followRollouts polls ros (updated in place) until none runs, and returns per rollout the mark
// taken when each wave started (the index after the last wave marks the rollout's end).
func (b *bench) followRollouts(ctx context.Context, ros []rolloutView, t0 time.Time) ([]map[int]waveMark, error) {
	marks := make([]map[int]waveMark, len(ros))
	for j := range marks {
		marks[j] = map[int]waveMark{}
	}
	lastLine := ""
	for {
		running := 0
		total := map[string]int{}
		var line strings.Builder
		for j := range ros {
			var cur rolloutView
			if err := b.api(ctx, http.MethodGet, "/api/v1/rollouts/"+ros[j].ID, nil, &cur); err != nil {
				running++
				continue
			}
			b.markWave(ctx, marks[j], cur)
			if cur.State == "running" {
				running++
			}
			for k, v := range cur.Devices {
				total[k] += v
			}
			fmt.Fprintf(&line, " %d", cur.Wave)
			ros[j] = cur
		}
		if l := fmt.Sprintf("waves%s: %s", line.String(), countsLine(total)); l != lastLine {
			b.logf("%6.1f s %d rollouts running, %s", time.Since(t0).Seconds(), running, l)
			lastLine = l
		}
		if running == 0 {
			return marks, nil
		}
		if time.Since(t0) > b.cfg.Timeout {
			return nil, fmt.Errorf("%w: %d rollouts still run after %s", ErrBench, running, b.cfg.Timeout)
		}
		if err := sleep(ctx, 250*time.Millisecond); err != nil {
			return nil, err
		}
	}
}

// markWave records, the first time cur is seen in a wave, when it started and where the Raft
// log and the simulated devices' activations stood.
func (b *bench) markWave(ctx context.Context, marks map[int]waveMark, cur rolloutView) {
	wave := cur.Wave
	if cur.State != "running" && cur.State != "paused" {
		wave = len(cur.WaveSizes) + 1 // the end marks the last wave's end
	}
	if _, ok := marks[wave]; ok || wave <= 0 {
		return
	}
	n := b.node(ctx)
	at := time.UnixMilli(cur.WaveStartedAt)
	if wave > len(cur.WaveSizes) {
		at = time.UnixMilli(cur.UpdatedAt)
	}
	marks[wave] = waveMark{at: at, index: n.LastLogIndex, raft: n.Disk.Bytes["raftlog"], lastActive: b.sim.Stats().LastActiveBy[cur.ID]}
}

// waveFigures turns the wave marks of the finished rollouts into per-wave figures (the largest
// over the rollouts for durations, the mean for the decision latency).
func (b *bench) waveFigures(ros []rolloutView, marks []map[int]waveMark) []WaveFigures {
	var out []WaveFigures
	for w := 1; w <= len(ros[0].WaveSizes); w++ {
		wf := WaveFigures{Wave: w}
		var minIndex, maxIndex uint64
		var minRaft, maxRaft int64
		var decisions time.Duration
		n := 0
		for j, ro := range ros {
			start, okS := marks[j][w]
			end, okE := marks[j][w+1]
			if !okS || !okE {
				continue
			}
			prev := 0
			if w > 1 {
				prev = ro.WaveSizes[w-2]
			}
			wf.Devices += ro.WaveSizes[w-1] - prev
			wf.Duration = max(wf.Duration, end.at.Sub(start.at))
			if n == 0 || start.index < minIndex {
				minIndex, minRaft = start.index, start.raft
			}
			maxIndex, maxRaft = max(maxIndex, end.index), max(maxRaft, end.raft)
			if !end.lastActive.IsZero() && end.lastActive.After(start.at) {
				wf.Settled = max(wf.Settled, end.lastActive.Sub(start.at))
				d := end.at.Sub(end.lastActive) - b.cfg.Bake // the last wave bakes too before completing
				wf.Decision = max(wf.Decision, d)
				decisions += d
			}
			n++
		}
		if n == 0 {
			continue
		}
		wf.DecisionMean = decisions / time.Duration(n)
		wf.Entries, wf.RaftBytes = maxIndex-minIndex, maxRaft-minRaft
		out = append(out, wf)
	}
	return out
}

func countsLine(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%d", k, m[k])
	}
	return strings.Join(parts, " ")
}

// randReader is crypto/rand for io.ReadFull.
type randReader struct{}

func (randReader) Read(p []byte) (int, error) { return cryptoRead(p) }

// Report formats r for docs/benchmarks.md.
func (r BenchResult) Report() string {
	var sb strings.Builder
	mib := func(v int64) float64 { return float64(v) / (1 << 20) }
	fmt.Fprintf(&sb, "devices %d over %d MQTT connections, model %d bytes, %d rollout(s) at once\n", r.Devices, r.Conns, r.ModelBytes, r.Rollouts)
	fmt.Fprintf(&sb, "enrolment: %.1f s (%.0f devices/s); all online after %.1f s\n", r.Enroll.Seconds(), float64(r.Devices)/max(r.Enroll.Seconds(), 1e-9), r.Online.Seconds())
	for _, s := range []struct {
		name string
		v    Steady
	}{{"steady before the rollout", r.Before}, {"steady after the rollout", r.After}} {
		fmt.Fprintf(&sb, "%s: hub %.3f cores, RSS %.0f MiB (%.1f KiB per device over idle %.0f MiB); broker %.3f cores, RSS %.0f MiB; load tool %.3f cores; %.0f of %.0f device messages/s handled; %.2f raft entries/s, %.0f raft log B/s; heartbeats/s %.0f replicated, %.0f local\n",
			s.name, s.v.HubCores, mib(s.v.HubRSS), float64(s.v.HubRSS-r.IdleRSS)/1024/float64(max(r.Devices, 1)), mib(r.IdleRSS), s.v.BrokerCores, mib(s.v.BrokerRSS), s.v.LoadCores, s.v.MessagesPerSec, s.v.OfferedPerSec, s.v.EntriesPerSec,
			s.v.RaftBytesPerSec, s.v.HeartbeatsReplicated, s.v.HeartbeatsLocal)
	}
	fmt.Fprintf(&sb, "rollout: %s %s in %.1f s; hub CPU %.1f s (%.2f cores), broker %.1f s, load tool %.1f s; hub peak RSS %.0f MiB, broker peak RSS %.0f MiB\n",
		r.State, countsLine(r.Counts), r.Rollout.Seconds(), r.HubCPU.Seconds(), r.HubCPU.Seconds()/max(r.Rollout.Seconds(), 1e-9), r.BrokerCPU.Seconds(), r.LoadCPU.Seconds(), mib(r.HubPeakRSS), mib(r.BrokerPeakRSS))
	fmt.Fprintf(&sb, "chunk egress: shared %d B (%.1f × model), per device %d B (%.1f × model)\n", r.EgressShared, float64(r.EgressShared)/float64(max(r.ModelBytes, 1)), r.EgressDevice, float64(r.EgressDevice)/float64(max(r.ModelBytes, 1)))
	fmt.Fprintf(&sb, "hub fetch requests during the rollout %v; chunks of shared requests %v\n", r.Fetches, r.SharedChunks)
	sb.WriteString("| wave | devices | wave start → next | start → last active | decision (last active → next start − bake), slowest / mean | raft entries | raft log bytes |\n| --- | --- | --- | --- | --- | --- | --- |\n")
	for _, w := range r.Waves {
		fmt.Fprintf(&sb, "| %d | %d | %.1f s | %.1f s | %.2f / %.2f s | %d | %.1f MiB |\n", w.Wave, w.Devices, w.Duration.Seconds(), w.Settled.Seconds(), w.Decision.Seconds(), w.DecisionMean.Seconds(), w.Entries, mib(w.RaftBytes))
	}
	fmt.Fprintf(&sb, "hub data dir at the end: db %.0f MiB, raft log %.0f MiB\n", mib(r.DBBytes), mib(r.RaftLogBytes))
	l := r.Load
	fmt.Fprintf(&sb, "load tool: published %v (errors %d); desired %d (verified %d, bad payloads %d); frames shared %d, per device %d; retries %d (%d for chunks); acks %d\n",
		l.Published, l.PublishErrors, l.Desired, l.Verified, l.BadPayloads, l.SharedFrames, l.DeviceFrames, l.Retries, l.ChunkRetries, l.Acks)
	return sb.String()
}

func cryptoRead(p []byte) (int, error) { return rand.Read(p) }
