package demo

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// BenchConfig is one fleet benchmark: a one-node hub, Devices real agents in one `firmware-sim
// fleet` process, and a rollout of a ModelBytes model to all of them.
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
	// Log receives progress lines (default os.Stderr).
	Log io.Writer
}

// BenchResult is what one fleet benchmark measured on this machine.
type BenchResult struct {
	Devices int
	// Online is the time from starting the fleet to every device online at the hub.
	Online time.Duration
	// Rollout is the time from creating the rollout to its completion.
	Rollout time.Duration
	// HubCPU is the hub's CPU time during the rollout; HubPeakRSS and FleetPeakRSS the largest
	// resident sizes seen over the whole run (sampled every 500 ms).
	HubCPU                   time.Duration
	HubPeakRSS, FleetPeakRSS int64
	// State is the rollout's final state, with the device counts.
	State   string
	Counts  map[string]int
	Summary string
}

// Row formats r as one line of the benchmark table.
func (r BenchResult) Row() string {
	return fmt.Sprintf("| %d | %.1f s | %.1f s | %.1f s | %d MiB | %d MiB | %s %s |", r.Devices, r.Online.Seconds(), r.Rollout.Seconds(),
		r.HubCPU.Seconds(), r.HubPeakRSS>>20, r.FleetPeakRSS>>20, r.State, countsText(r.Counts))
}

// BenchHeader is the benchmark table's header.
const BenchHeader = "| agents | all online | rollout of the model to all | hub CPU during rollout | hub peak RSS | fleet process peak RSS | rollout |\n| --- | --- | --- | --- | --- | --- | --- |"

// BenchFleet runs one fleet benchmark and stops everything it started.
func BenchFleet(ctx context.Context, cfg BenchConfig) (BenchResult, error) {
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
	if cfg.Log == nil {
		cfg.Log = os.Stderr
	}
	res := BenchResult{Devices: cfg.Devices}
	if cfg.Dir == "" {
		d, err := os.MkdirTemp("", "bench-fleet-")
		if err != nil {
			return res, err
		}
		defer os.RemoveAll(d)
		cfg.Dir = d
	}
	bin, err := filepath.Abs(cfg.Bin)
	if err != nil {
		return res, err
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return res, err
	}
	if err := os.RemoveAll(dir); err != nil {
		return res, err
	}
	for _, sub := range []string{"hub", "fleet", "logs", "assets"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			return res, err
		}
	}
	var ps procs
	ps.logDir = filepath.Join(dir, "logs")
	defer ps.stopAll(10 * time.Second)
	r := &run{cfg: Config{Out: cfg.Log}, start: time.Now()}
	mqttURL := "tcp://" + cfg.MQTTAddr
	hub, err := ps.start("hub", filepath.Join(bin, "driftline"), "hub", "serve", "--data", filepath.Join(dir, "hub"), "--node-id", "bench",
		"--http", cfg.HTTPAddr, "--raft", cfg.RaftAddr, "--mqtt", cfg.MQTTAddr, "--advertise-mqtt", mqttURL)
	if err != nil {
		return res, err
	}
	r.hubProc = hub
	hubURL := "http://" + cfg.HTTPAddr
	token, err := r.waitHub(ctx, hubURL, filepath.Join(dir, "hub", "admin.token"))
	if err != nil {
		return res, err
	}
	ps.env = []string{"DRIFTLINE_HUB=" + hubURL, "DRIFTLINE_TOKEN=" + token}
	api := &hubAPI{url: hubURL, token: token, c: &http.Client{}}

	// Peak RSS sampling of the hub and the fleet process.
	sampleCtx, stopSample := context.WithCancel(ctx)
	defer stopSample()
	var fleet *proc
	go func() {
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-sampleCtx.Done():
				return
			case <-t.C:
				res.HubPeakRSS = max(res.HubPeakRSS, rss(hub.cmd.Process.Pid))
				if fleet != nil {
					res.FleetPeakRSS = max(res.FleetPeakRSS, rss(fleet.cmd.Process.Pid))
				}
			}
		}
	}()

	v1, _, err := writeArtifacts(filepath.Join(dir, "assets"), cfg.ModelBytes)
	if err != nil {
		return res, err
	}
	dl := filepath.Join(bin, "driftline")
	for _, args := range [][]string{
		{dl, "model", "create", "bench"},
		{dl, "model", "push", "bench", "--artifact", v1, "--format", "bench"},
		{dl, "model", "approve", "bench", "1", "--comment", "bench"},
	} {
		if _, err := ps.run(ctx, args...); err != nil {
			return res, err
		}
	}

	t0 := time.Now()
	fleet, err = ps.start("fleet", filepath.Join(bin, "firmware-sim"), "fleet", "--devices", strconv.Itoa(cfg.Devices), "--hub", hubURL,
		"--token", token, "--broker", mqttURL, "--state-dir", filepath.Join(dir, "fleet"), "--heartbeat", "30s", "--summary-every", "10s")
	if err != nil {
		return res, err
	}
	fmt.Fprintf(cfg.Log, "bench-fleet: %d agents starting\n", cfg.Devices)
	for {
		n, err := countOnline(ctx, api)
		if err == nil && n >= cfg.Devices {
			break
		}
		if done, perr := fleet.exited(); done {
			return res, fmt.Errorf("%w: fleet: %v (see %s)", ErrExited, perr, filepath.Join(ps.logDir, "fleet.log"))
		}
		if time.Since(t0) > cfg.Timeout {
			return res, fmt.Errorf("%w: %d of %d agents online", ErrNotReady, n, cfg.Devices)
		}
		if err := sleepCtx(ctx, time.Second); err != nil {
			return res, err
		}
	}
	res.Online = time.Since(t0)
	fmt.Fprintf(cfg.Log, "bench-fleet: %d agents online after %s\n", cfg.Devices, res.Online.Round(time.Millisecond))

	cpu0 := cpuTime(hub.cmd.Process.Pid)
	t1 := time.Now()
	var ro rollout
	if err := api.do(ctx, http.MethodPost, "/api/v1/rollouts", map[string]any{"model": "bench", "version": 1, "selector": "",
		"waves": []float64{100}, "bake_seconds": 0, "device_timeout_seconds": int(cfg.Timeout.Seconds())}, &ro); err != nil {
		return res, err
	}
	for {
		cur, err := api.rollout(ctx, ro.ID)
		if err == nil && cur.State != "running" {
			res.State, res.Counts = cur.State, cur.Devices
			break
		}
		if time.Since(t1) > cfg.Timeout {
			return res, fmt.Errorf("%w: rollout still running: %v", ErrNotReady, cur.Devices)
		}
		if err := sleepCtx(ctx, 250*time.Millisecond); err != nil {
			return res, err
		}
	}
	res.Rollout = time.Since(t1)
	res.HubCPU = cpuTime(hub.cmd.Process.Pid) - cpu0
	fmt.Fprintf(cfg.Log, "bench-fleet: rollout %s after %s\n", res.State, res.Rollout.Round(time.Millisecond))
	return res, nil
}

// countOnline counts online devices, page by page.
func countOnline(ctx context.Context, api *hubAPI) (int, error) {
	n, cursor := 0, ""
	for {
		var page struct {
			Items      []device `json:"items"`
			NextCursor string   `json:"next_cursor"`
		}
		path := "/api/v1/devices?limit=1000"
		if cursor != "" {
			path += "&cursor=" + url.QueryEscape(cursor)
		}
		if err := api.do(ctx, http.MethodGet, path, nil, &page); err != nil {
			return n, err
		}
		for _, d := range page.Items {
			if d.Online {
				n++
			}
		}
		if page.NextCursor == "" || len(page.Items) == 0 {
			return n, nil
		}
		cursor = page.NextCursor
	}
}

// rss reads a process's resident set size from /proc (0 where there is none).
func rss(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// cpuTime reads a process's user+system CPU time from /proc (clock ticks at 100 Hz).
func cpuTime(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}
