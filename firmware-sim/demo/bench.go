package demo

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/driftline/driftline/firmware-sim/hubpage"
	"github.com/driftline/driftline/internal/procstat"
)

// BenchConfig is one fleet benchmark: a one-node hub, Devices real agents in one `firmware-sim
// fleet` process (heartbeats every 10 s, one reporting window per minute, fed one reading per
// second each in-process), and a rollout of a ModelBytes model to all of them.
type BenchConfig struct {
	// Bin holds driftline and firmware-sim (default "bin").
	Bin string
	// Dir is the working directory (emptied first; default a temporary one).
	Dir string
	// Devices is the fleet size.
	Devices int
	// ModelBytes is the artifact size (default 1 MiB).
	ModelBytes int
	// HTTPAddr, RaftAddr, MQTTAddr are the hub's addresses (defaults as the demo's).
	HTTPAddr, RaftAddr, MQTTAddr string
	// Timeout bounds each phase (default 10 min).
	Timeout time.Duration
	// Steady is how long each steady state is measured (default 60 s: one reporting window of
	// every agent): once with every agent online before the rollout, once after it.
	Steady time.Duration
	// Settle is how long the bench waits before each steady window (default 30 s): after every
	// agent is online, so the window holds no connection burst, and after the rollout, so it
	// holds no rollout tail (agents activating the model, their first windows, the controller's
	// last passes); negative: none.
	Settle time.Duration
	// ProfileDir, when set, receives the hub's CPU profile over each steady window
	// (steady-before-N.cpu.pprof, steady-after-N.cpu.pprof) and its heap profile at the end of
	// it (steady-before-N.heap.pprof, ...); the hub is started with DRIFTLINE_PPROF=1 for it.
	// With ProfileDir the fleet process serves its profiles on FleetPprofAddr (default
	// 127.0.0.1:16061), and CPU profiles of the hub and the fleet are taken in 30 s slices while
	// the agents come online and during the rollout (online-N-I.hub.cpu.pprof,
	// rollout-N-I.fleet.cpu.pprof, ...).
	ProfileDir     string
	FleetPprofAddr string
	// HubEnv are extra environment variables of the hub process only (e.g. GOGC=50).
	HubEnv []string
	// Log receives progress lines (default os.Stderr).
	Log io.Writer
}

// BenchResult is what one fleet benchmark measured on this machine.
type BenchResult struct {
	Devices int
	// Online is the time from starting the fleet to every device online at the hub.
	Online time.Duration
	// Rollout is the time from creating the rollout (waves [1, 10, 100] %, bake 5 s) to its
	// completion; RolloutCPU the hub's CPU time meanwhile; RolloutBytes the chunk frame bytes the
	// hub sent meanwhile.
	Rollout, RolloutCPU time.Duration
	RolloutBytes        int64
	// EgressShared and EgressDevice are the chunk data frame bytes the hub published during the
	// rollout on the model's shared topic (once per wave) and on devices' own topics (old
	// agents, retries, stragglers): hub/protocol's driftline_hub_chunk_egress_bytes_total. A hub
	// without that metric reports its whole chunk frame bytes as EgressDevice.
	EgressShared, EgressDevice int64
	// ModelBytes is the model's size, the unit of the egress column.
	ModelBytes int
	// FleetRolloutCPU is the fleet process's CPU time during the rollout.
	FleetRolloutCPU time.Duration
	// IdleRSS is the hub's resident size before the fleet connected.
	IdleRSS int64
	// Before is the hub's steady state with every agent online, heartbeating and reporting
	// windows, before the rollout (measured even when the rollout then fails); After the one
	// after the completed rollout (zero when the rollout did not complete).
	Before, After SteadyFigures
	// HubPeakRSS and FleetPeakRSS are the largest resident sizes seen over the whole run
	// (sampled every 500 ms); FleetPeakAnon the largest anonymous part of the fleet's (heap and
	// stacks, without the file pages of its memory-mapped database).
	HubPeakRSS, FleetPeakRSS, FleetPeakAnon int64
	// State is the rollout's final state, with the device counts.
	State  string
	Counts map[string]int
}

// SteadyFigures is one steady-state measurement of the hub: after Settle, its CPU and the MQTT
// messages its broker accepted over Window, and its memory at the end of Window.
type SteadyFigures struct {
	// Cores is the hub's CPU use over Window (cores); MessagesPerSec the MQTT messages its broker
	// accepted per second meanwhile.
	Cores, MessagesPerSec float64
	// RSS is the hub's resident size at the end, Anon its anonymous part (heap and stacks; the
	// rest is file pages of the memory-mapped databases, which the kernel can reclaim);
	// PerDevice is (RSS - BenchResult.IdleRSS) / Devices.
	RSS, Anon, PerDevice int64
	// Heap and Stacks are the Go runtime's heap in use and goroutine stacks at the end (its
	// go_memstats_heap_inuse_bytes and go_memstats_stack_inuse_bytes), Goroutines its goroutines.
	Heap, Stacks int64
	Goroutines   int
	// Window is the measured window's length, after Settle.
	Window, Settle time.Duration
}

// Measured reports whether s holds a measurement.
func (s SteadyFigures) Measured() bool { return s.Window > 0 }

// Row formats r as one line of the benchmark table.
func (r BenchResult) Row() string {
	unit := float64(max(r.ModelBytes, 1))
	return fmt.Sprintf("| %d | %.1f s | %.1f s (%s %s) | %.1f s (fleet %.1f s) | %d MiB | %.1f + %.1f | %.2f | %d MiB | %.0f | %.0f KiB | %d MiB | %d MiB (%d MiB anon) |",
		r.Devices, r.Online.Seconds(), r.Rollout.Seconds(), r.State, countsText(r.Counts), r.RolloutCPU.Seconds(), r.FleetRolloutCPU.Seconds(), r.RolloutBytes>>20,
		float64(r.EgressShared)/unit, float64(r.EgressDevice)/unit,
		r.After.Cores, r.After.RSS>>20, r.After.MessagesPerSec, float64(r.After.PerDevice)/1024, r.HubPeakRSS>>20, r.FleetPeakRSS>>20, r.FleetPeakAnon>>20)
}

// SteadyRows formats r's steady states and memory as lines of the SteadyHeader table, one per
// measured steady state (before the rollout, after it): the figures issue 18's goals name (time
// to all online, hub CPU over a stated window, memory per device). A run whose rollout did not
// complete has only the line before it.
func (r BenchResult) SteadyRows() []string {
	per := func(b int64) float64 { return float64(b) / 1024 / float64(max(r.Devices, 1)) }
	var rows []string
	for _, p := range []struct {
		name string
		s    SteadyFigures
	}{{"before the rollout", r.Before}, {"after the rollout", r.After}} {
		s := p.s
		if !s.Measured() {
			continue
		}
		rows = append(rows, fmt.Sprintf("| %d | %s | %.1f s | %.0f s after %.0f s | %.3f | %.0f | %d MiB (%d MiB anon) | %.0f KiB | %.0f KiB | %d MiB (%.1f KiB/device) | %d MiB (%.1f KiB/device) | %d | %d MiB |",
			r.Devices, p.name, r.Online.Seconds(), s.Window.Seconds(), s.Settle.Seconds(), s.Cores, s.MessagesPerSec, s.RSS>>20, s.Anon>>20,
			float64(s.PerDevice)/1024, per(s.Anon), s.Heap>>20, per(s.Heap), s.Stacks>>20, per(s.Stacks), s.Goroutines, r.IdleRSS>>20))
	}
	return rows
}

// SteadyHeader is the SteadyRows table's header.
const SteadyHeader = "| agents | measured | all online | steady window | hub CPU steady (cores) | MQTT messages/s | hub RSS steady | RSS - idle per device | anon per device | Go heap in use | Go stacks | goroutines | hub idle RSS |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"

// BenchHeader is the benchmark table's header.
const BenchHeader = "| agents | all online | rollout [1, 10, 100] %, bake 5 s | hub CPU during rollout (fleet process) | hub bytes sent (chunk frames) | chunk egress, shared + per device (× model size) | hub CPU steady (cores) | hub RSS steady | MQTT messages/s steady | hub memory per device | hub peak RSS | fleet process peak RSS |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"

// benchScenario feeds every fleet agent one reading per second from the demo's fields, without
// events: steady traffic for the agents' windows.
func benchScenario() string {
	return "name: bench-steady\ndescription: the demo's fields, one reading per second, no events\nrate: 1\n" + fieldsYAML
}

// BenchFleet runs one fleet benchmark and stops everything it started.
func BenchFleet(ctx context.Context, cfg BenchConfig) (BenchResult, error) {
	cfg.defaults()
	b := &bench{cfg: cfg, res: BenchResult{Devices: cfg.Devices}}
	if cfg.Dir == "" {
		d, err := os.MkdirTemp("", "bench-fleet-")
		if err != nil {
			return b.res, err
		}
		defer os.RemoveAll(d)
		b.cfg.Dir = d
	}
	if err := b.prepare(); err != nil {
		return b.res, err
	}
	defer b.ps.stopAll(10 * time.Second)
	if err := b.startHub(ctx); err != nil {
		return b.res, err
	}
	sampleCtx, stopSample := context.WithCancel(ctx)
	defer stopSample()
	go b.samplePeakRSS(sampleCtx)
	scen, err := b.pushAssets(ctx)
	if err != nil {
		return b.result(), err
	}
	idle, _ := procstat.Memory(b.hub.cmd.Process.Pid)
	b.mu.Lock()
	b.res.IdleRSS, b.res.ModelBytes = idle, b.cfg.ModelBytes
	b.mu.Unlock()
	online, err := b.startFleet(ctx, scen)
	if err != nil {
		return b.result(), err
	}
	b.mu.Lock()
	b.res.Online = online
	b.mu.Unlock()
	before, err := b.steady(ctx, "before")
	if err != nil {
		return b.result(), err
	}
	b.mu.Lock()
	b.res.Before = before
	b.mu.Unlock()
	ro, err := b.rollOut(ctx)
	if err != nil {
		return b.result(), err
	}
	b.mu.Lock()
	res := &b.res
	res.Rollout, res.RolloutCPU, res.RolloutBytes, res.FleetRolloutCPU = ro.time, ro.cpu, ro.bytes, ro.fleetCPU
	res.State, res.Counts = ro.state, ro.counts
	res.EgressShared, res.EgressDevice = ro.shared, ro.device
	b.mu.Unlock()
	after, err := b.steady(ctx, "after")
	if err != nil {
		return b.result(), err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.res.After = after
	return b.res, nil
}

func (cfg *BenchConfig) defaults() {
	if cfg.Bin == "" {
		cfg.Bin = "bin"
	}
	if cfg.ModelBytes == 0 {
		cfg.ModelBytes = 1 << 20
	}
	if cfg.HTTPAddr == "" {
		cfg.HTTPAddr, cfg.RaftAddr, cfg.MQTTAddr = "127.0.0.1:8080", "127.0.0.1:7000", "127.0.0.1:1883"
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Minute
	}
	if cfg.Steady == 0 {
		cfg.Steady = time.Minute
	}
	if cfg.Settle == 0 {
		cfg.Settle = 30 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = os.Stderr
	}
	if cfg.FleetPprofAddr == "" {
		cfg.FleetPprofAddr = "127.0.0.1:16061"
	}
}

// bench is one fleet benchmark's state: its processes, the hub's API and what it measured so
// far (res, shared with the RSS sampler under mu).
type bench struct {
	cfg     BenchConfig
	bin     string // absolute cfg.Bin
	dir     string // absolute cfg.Dir
	ps      procs
	hub     *proc
	api     *hubAPI
	hubURL  string
	mqttURL string
	token   string

	mu    sync.Mutex
	fleet *proc
	res   BenchResult
}

// result is a copy of what was measured so far.
func (b *bench) result() BenchResult {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.res
}

// prepare makes a fresh benchmark dir with its hub, fleet, logs and assets subdirectories.
func (b *bench) prepare() error {
	var err error
	if b.bin, err = filepath.Abs(b.cfg.Bin); err != nil {
		return err
	}
	if b.dir, err = filepath.Abs(b.cfg.Dir); err != nil {
		return err
	}
	if err := os.RemoveAll(b.dir); err != nil {
		return err
	}
	for _, sub := range []string{"hub", "fleet", "logs", "assets"} {
		if err := os.MkdirAll(filepath.Join(b.dir, sub), 0o700); err != nil {
			return err
		}
	}
	b.ps.logDir = filepath.Join(b.dir, "logs")
	return nil
}

// startHub starts the one-node hub with its embedded broker and waits until it is ready.
func (b *bench) startHub(ctx context.Context) error {
	cfg := b.cfg
	r := &run{cfg: Config{Out: cfg.Log}, start: time.Now()}
	b.mqttURL = "tcp://" + cfg.MQTTAddr
	if cfg.ProfileDir != "" {
		b.ps.env = append(b.ps.env, "DRIFTLINE_PPROF=1")
	}
	b.ps.env = append(b.ps.env, cfg.HubEnv...) // the hub's only: replaced once it is up
	hub, err := b.ps.start("hub", filepath.Join(b.bin, "driftline"), "hub", "serve", "--data", filepath.Join(b.dir, "hub"), "--node-id", "bench",
		"--http", cfg.HTTPAddr, "--raft", cfg.RaftAddr, "--mqtt", cfg.MQTTAddr, "--advertise-mqtt", b.mqttURL)
	if err != nil {
		return err
	}
	b.hub, r.hubProc = hub, hub
	b.hubURL = "http://" + cfg.HTTPAddr
	if b.token, err = r.waitHub(ctx, b.hubURL, filepath.Join(b.dir, "hub", "admin.token")); err != nil {
		return err
	}
	b.ps.env = []string{"DRIFTLINE_HUB=" + b.hubURL, "DRIFTLINE_TOKEN=" + b.token}
	b.api = &hubAPI{url: b.hubURL, token: b.token, c: &http.Client{}}
	return nil
}

// samplePeakRSS samples the peak RSS of the hub and the fleet process every 500 ms until ctx
// ends.
func (b *bench) samplePeakRSS(ctx context.Context) {
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			hubRSS, _ := procstat.Memory(b.hub.cmd.Process.Pid)
			b.mu.Lock()
			b.res.HubPeakRSS = max(b.res.HubPeakRSS, hubRSS)
			if b.fleet != nil {
				total, anon := procstat.Memory(b.fleet.cmd.Process.Pid)
				b.res.FleetPeakRSS, b.res.FleetPeakAnon = max(b.res.FleetPeakRSS, total), max(b.res.FleetPeakAnon, anon)
			}
			b.mu.Unlock()
		}
	}
}

// pushAssets pushes a dataset with a contract and a reference profile, and a model version
// trained on it and approved, so that the agents validate, profile and score their windows once
// it runs. It returns the path of the firmware scenario it wrote.
func (b *bench) pushAssets(ctx context.Context) (string, error) {
	assets := filepath.Join(b.dir, "assets")
	contract, sample, scen := filepath.Join(assets, "contract.json"), filepath.Join(assets, "sample.csv"), filepath.Join(assets, "scenario.yaml")
	var cbuf bytes.Buffer
	if err := json.Compact(&cbuf, []byte(contractJSON)); err != nil {
		return "", err
	}
	for path, data := range map[string][]byte{contract: cbuf.Bytes(), scen: []byte(benchScenario())} {
		if err := os.WriteFile(path, data, 0o644); err != nil {
			return "", err
		}
	}
	if err := writeSample(sample, 1000); err != nil {
		return "", err
	}
	v1, _, err := writeArtifacts(assets, b.cfg.ModelBytes)
	if err != nil {
		return "", err
	}
	dl := filepath.Join(b.bin, "driftline")
	for _, args := range [][]string{
		{dl, "dataset", "create", DatasetName},
		{dl, "dataset", "push", DatasetName, "--contract", contract, "--sample", sample},
		{dl, "model", "create", "bench"},
		{dl, "model", "push", "bench", "--artifact", v1, "--trained-on", DatasetName + "@1", "--format", "bench"},
		{dl, "model", "approve", "bench", "1", "--comment", "bench"},
	} {
		if _, err := b.ps.run(ctx, args...); err != nil {
			return "", err
		}
	}
	return scen, nil
}

// startFleet starts the firmware-sim fleet process playing scenario scen and returns how long
// its agents took to come online.
func (b *bench) startFleet(ctx context.Context, scen string) (time.Duration, error) {
	cfg := b.cfg
	t0 := time.Now()
	args := []string{"fleet", "--devices", strconv.Itoa(cfg.Devices), "--hub", b.hubURL,
		"--token", b.token, "--broker", b.mqttURL, "--state-dir", filepath.Join(b.dir, "fleet"), "--scenario", scen,
		"--heartbeat", "10s", "--window", "60s", "--summary-every", "10s"}
	if cfg.ProfileDir != "" {
		args = append(args, "--pprof", cfg.FleetPprofAddr)
	}
	fl, err := b.ps.start("fleet", append([]string{filepath.Join(b.bin, "firmware-sim")}, args...)...)
	if err != nil {
		return 0, err
	}
	b.mu.Lock()
	b.fleet = fl
	b.mu.Unlock()
	defer b.profilePhase(ctx, "online")()
	fmt.Fprintf(cfg.Log, "bench-fleet: %d agents starting\n", cfg.Devices)
	lastLog := t0
	for {
		n, err := countOnline(ctx, b.api)
		if err == nil && n >= cfg.Devices {
			break
		}
		if time.Since(lastLog) >= 5*time.Second {
			fmt.Fprintf(cfg.Log, "bench-fleet: %5.1f s %d of %d agents online\n", time.Since(t0).Seconds(), n, cfg.Devices)
			lastLog = time.Now()
		}
		if done, perr := fl.exited(); done {
			return 0, fmt.Errorf("%w: fleet: %v (see %s)", ErrExited, perr, filepath.Join(b.ps.logDir, "fleet.log"))
		}
		if time.Since(t0) > cfg.Timeout {
			return 0, fmt.Errorf("%w: %d of %d agents online", ErrNotReady, n, cfg.Devices)
		}
		if err := sleepCtx(ctx, time.Second); err != nil {
			return 0, err
		}
	}
	online := time.Since(t0)
	fmt.Fprintf(cfg.Log, "bench-fleet: %d agents online after %s\n", cfg.Devices, online.Round(time.Millisecond))
	return online, nil
}

// rolloutFigures is what the rollout measured.
type rolloutFigures struct {
	state         string
	counts        map[string]int
	time          time.Duration
	cpu, fleetCPU time.Duration
	bytes         int64
	// shared and device split the chunk egress (BenchResult.EgressShared, EgressDevice).
	shared, device int64
}

// rollOut rolls the model out in waves of 1, 10 and 100 %, waits until the rollout ends, and
// measures its time, the hub's and the fleet's CPU and the chunk bytes served.
func (b *bench) rollOut(ctx context.Context) (rolloutFigures, error) {
	cfg, api := b.cfg, b.api
	pid, fleetPid := b.hub.cmd.Process.Pid, b.fleet.cmd.Process.Pid
	cpu0, bytes0 := procstat.CPU(pid), metricSum(ctx, api, "driftline_hub_chunk_bytes_served_total")
	fleetCPU0 := procstat.CPU(fleetPid)
	shared0, device0 := egress(ctx, api)
	defer b.profilePhase(ctx, "rollout")()
	t1 := time.Now()
	var ro rollout
	if err := api.do(ctx, http.MethodPost, "/api/v1/rollouts", map[string]any{"model": "bench", "version": 1, "selector": "",
		"waves": []float64{1, 10, 100}, "bake_seconds": 5, "device_timeout_seconds": int(cfg.Timeout.Seconds())}, &ro); err != nil {
		return rolloutFigures{}, err
	}
	var f rolloutFigures
	lastLog, lastWave := "", 0
	defer b.logStages("at the rollout's end")
	for {
		cur, err := api.rollout(ctx, ro.ID)
		if err == nil && cur.State != "running" {
			f.state, f.counts = cur.State, cur.Devices
			break
		}
		if err == nil {
			if cur.Wave != lastWave {
				b.logStages(fmt.Sprintf("as wave %d starts", cur.Wave))
				lastWave = cur.Wave
			}
			if line := fmt.Sprintf("wave %d: %s", cur.Wave, countsText(cur.Devices)); line != lastLog {
				fmt.Fprintf(cfg.Log, "bench-fleet: %5.1f s rollout %s\n", time.Since(t1).Seconds(), line)
				lastLog = line
			}
		}
		if time.Since(t1) > cfg.Timeout {
			// Past the limit there is no table row: say what the rollout cost so far.
			shared1, device1 := egress(ctx, api)
			fmt.Fprintf(cfg.Log, "bench-fleet: at the limit (%s): hub CPU %.1f s, fleet CPU %.1f s, chunk egress shared %d + per device %d bytes (model %d bytes); shared requests: %s; fetch requests: %s\n",
				cfg.Timeout, (procstat.CPU(pid) - cpu0).Seconds(), (procstat.CPU(fleetPid) - fleetCPU0).Seconds(), shared1-shared0, device1-device0, cfg.ModelBytes,
				metricText(ctx, api, "driftline_hub_shared_chunk_requests_total"), metricText(ctx, api, "driftline_hub_fetch_requests_total"))
			return f, fmt.Errorf("%w: rollout still running: %v", ErrNotReady, cur.Devices)
		}
		if err := sleepCtx(ctx, 250*time.Millisecond); err != nil {
			return f, err
		}
	}
	f.time, f.cpu, f.fleetCPU = time.Since(t1), procstat.CPU(pid)-cpu0, procstat.CPU(fleetPid)-fleetCPU0
	f.bytes = int64(metricSum(ctx, api, "driftline_hub_chunk_bytes_served_total") - bytes0)
	shared1, device1 := egress(ctx, api)
	f.shared, f.device = shared1-shared0, device1-device0
	fmt.Fprintf(cfg.Log, "bench-fleet: chunk egress during the rollout: shared %d bytes, per device %d bytes (model %d bytes, 3 waves); shared requests: %s\n",
		f.shared, f.device, cfg.ModelBytes, metricText(ctx, api, "driftline_hub_shared_chunk_requests_total"))
	fmt.Fprintf(cfg.Log, "bench-fleet: rollout %s after %s (fetch requests: %s; broker drops: %s)\n",
		f.state, f.time.Round(time.Millisecond), metricText(ctx, api, "driftline_hub_fetch_requests_total"),
		metricText(ctx, api, "driftline_hub_mqtt_dropped_total"))
	return f, nil
}

// logStages logs the fleet's last summary of its agents' pull stages (fleet.StageLine, in the
// fleet's log every -summary-every), cumulative since the fleet started.
func (b *bench) logStages(when string) {
	f, err := os.Open(filepath.Join(b.ps.logDir, "fleet.log"))
	if err != nil {
		return
	}
	defer f.Close()
	const tail = 1 << 20
	if st, err := f.Stat(); err == nil && st.Size() > tail {
		_, _ = f.Seek(st.Size()-tail, io.SeekStart)
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	last := ""
	for sc.Scan() {
		if _, st, ok := strings.Cut(sc.Text(), "pull stages since desired"); ok {
			last = "pull stages since desired" + st
		}
	}
	if last != "" {
		fmt.Fprintf(b.cfg.Log, "bench-fleet: fleet %s: %s\n", when, last)
	}
}

// steady measures one steady state, phase "before" (every agent online, no model yet) or
// "after" (the rollout): it waits cfg.Settle, then measures the hub's CPU and messages over
// cfg.Steady (heartbeats, and one window per agent per minute) and its memory at the end. With
// cfg.ProfileDir the hub's CPU profile covers the same window
// (steady-PHASE-N.cpu.pprof) and its heap profile is taken at the end (steady-PHASE-N.heap.pprof).
func (b *bench) steady(ctx context.Context, phase string) (SteadyFigures, error) {
	f := SteadyFigures{Settle: max(b.cfg.Settle, 0)}
	if b.cfg.Settle > 0 {
		fmt.Fprintf(b.cfg.Log, "bench-fleet: settling for %s before the steady window %s the rollout\n", b.cfg.Settle, phase)
		if err := sleepCtx(ctx, b.cfg.Settle); err != nil {
			return SteadyFigures{}, err
		}
	}
	pid := b.hub.cmd.Process.Pid
	var prof chan error
	if b.cfg.ProfileDir != "" {
		prof = make(chan error, 1)
		go func() {
			prof <- b.saveProfile(ctx, fmt.Sprintf("/debug/pprof/profile?seconds=%d", int(b.cfg.Steady.Seconds())), fmt.Sprintf("steady-%s-%d.cpu.pprof", phase, b.cfg.Devices))
		}()
	}
	cpu0, msgs0, t2 := procstat.CPU(pid), metricSum(ctx, b.api, "driftline_hub_mqtt_messages_total"), time.Now()
	if err := sleepCtx(ctx, b.cfg.Steady); err != nil {
		return SteadyFigures{}, err
	}
	f.Window = time.Since(t2)
	f.Cores = (procstat.CPU(pid) - cpu0).Seconds() / f.Window.Seconds()
	f.MessagesPerSec = (metricSum(ctx, b.api, "driftline_hub_mqtt_messages_total") - msgs0) / f.Window.Seconds()
	f.RSS, f.Anon = procstat.Memory(pid)
	f.PerDevice = (f.RSS - b.result().IdleRSS) / int64(max(b.cfg.Devices, 1))
	f.Heap = int64(metricSum(ctx, b.api, "go_memstats_heap_inuse_bytes"))
	f.Stacks = int64(metricSum(ctx, b.api, "go_memstats_stack_inuse_bytes"))
	f.Goroutines = int(metricSum(ctx, b.api, "go_goroutines"))
	if prof != nil {
		if err := <-prof; err != nil {
			fmt.Fprintf(b.cfg.Log, "bench-fleet: cpu profile: %v\n", err)
		}
		if err := b.saveProfile(ctx, "/debug/pprof/heap", fmt.Sprintf("steady-%s-%d.heap.pprof", phase, b.cfg.Devices)); err != nil {
			fmt.Fprintf(b.cfg.Log, "bench-fleet: heap profile: %v\n", err)
		}
	}
	fmt.Fprintf(b.cfg.Log, "bench-fleet: steady %s the rollout: %.3f cores over %s, %.0f MQTT messages/s, RSS %d MiB (anon %d MiB), RSS - idle %.0f KiB per device, Go heap %d MiB, stacks %d MiB, %d goroutines\n",
		phase, f.Cores, f.Window.Round(time.Second), f.MessagesPerSec, f.RSS>>20, f.Anon>>20, float64(f.PerDevice)/1024, f.Heap>>20, f.Stacks>>20, f.Goroutines)
	return f, nil
}

// profilePhase, with cfg.ProfileDir, takes CPU profiles of the hub and the fleet process in 30 s
// slices (PHASE-N-I.hub.cpu.pprof, PHASE-N-I.fleet.cpu.pprof) until the returned stop is
// called; the slice running then is cut short and lost. Without cfg.ProfileDir it does nothing.
func (b *bench) profilePhase(ctx context.Context, phase string) (stop func()) {
	if b.cfg.ProfileDir == "" {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	loop := func(base, which string) {
		defer wg.Done()
		for i := 0; ctx.Err() == nil; i++ {
			name := fmt.Sprintf("%s-%d-%02d.%s.cpu.pprof", phase, b.cfg.Devices, i, which)
			if err := b.fetchProfile(ctx, base+"/debug/pprof/profile?seconds=30", name); err != nil && ctx.Err() == nil {
				fmt.Fprintf(b.cfg.Log, "bench-fleet: %s profile: %v\n", which, err)
				_ = sleepCtx(ctx, 5*time.Second)
			}
		}
	}
	wg.Add(2)
	go loop(b.api.url, "hub")
	go loop("http://"+b.cfg.FleetPprofAddr, "fleet")
	return func() { cancel(); wg.Wait() }
}

// saveProfile fetches one of the hub's /debug/pprof profiles into cfg.ProfileDir/name.
func (b *bench) saveProfile(ctx context.Context, path, name string) error {
	return b.fetchProfile(ctx, b.api.url+path, name)
}

// fetchProfile fetches the profile at url (with the hub's admin token) into
// cfg.ProfileDir/name; nothing is written when the request fails.
func (b *bench) fetchProfile(ctx context.Context, url, name string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+b.api.token)
	resp, err := b.api.c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	if err := os.MkdirAll(b.cfg.ProfileDir, 0o755); err != nil {
		return err
	}
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(b.cfg.ProfileDir, name), data, 0o644)
}

// metricSum reads the hub's /metrics and returns the sum of every sample of the metric family
// name (NaN when it cannot be read).
func metricSum(ctx context.Context, api *hubAPI, name string) float64 {
	sum, _ := metricSamples(ctx, api, name)
	return sum
}

// egress returns the hub's chunk egress bytes so far, shared and per device (all chunk frame
// bytes as per device from a hub that does not split them).
func egress(ctx context.Context, api *hubAPI) (shared, device int64) {
	_, lines := metricSamples(ctx, api, "driftline_hub_chunk_egress_bytes_total")
	if len(lines) == 0 {
		return 0, int64(metricSum(ctx, api, "driftline_hub_chunk_bytes_served_total"))
	}
	for _, l := range lines {
		labels, v, ok := strings.Cut(l, " ")
		n, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if !ok || err != nil {
			continue
		}
		switch {
		case strings.Contains(labels, `path="shared"`):
			shared += int64(n)
		case strings.Contains(labels, `path="device"`):
			device += int64(n)
		}
	}
	return shared, device
}

// metricText lists the samples of the metric family name, for the log ("none" when it has none).
func metricText(ctx context.Context, api *hubAPI, name string) string {
	_, lines := metricSamples(ctx, api, name)
	if len(lines) == 0 {
		return "none"
	}
	return strings.Join(lines, ", ")
}

// metricSamples reads the hub's /metrics and returns the sum of every sample of the metric
// family name (NaN when it cannot be read) and the samples' lines without the family name.
func metricSamples(ctx context.Context, api *hubAPI, name string) (float64, []string) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, api.url+"/metrics", nil)
	if err != nil {
		return math.NaN(), nil
	}
	req.Header.Set("Authorization", "Bearer "+api.token)
	resp, err := api.c.Do(req)
	if err != nil {
		return math.NaN(), nil
	}
	defer resp.Body.Close()
	sum, lines, err := hubpage.MetricSamples(resp.Body, name, "")
	if err != nil || resp.StatusCode != http.StatusOK {
		return math.NaN(), nil
	}
	return sum, lines
}

// countOnline counts online devices, page by page.
func countOnline(ctx context.Context, api *hubAPI) (int, error) {
	return hubpage.CountOnline(ctx, func(ctx context.Context, path string, out any) error {
		return api.do(ctx, http.MethodGet, path, nil, out)
	})
}
