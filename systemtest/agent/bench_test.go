package agent_test

import (
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/driftline/driftline/agent"
	"github.com/driftline/driftline/agent/agenttest"
	"github.com/driftline/driftline/hub/node/nodetest"
	"github.com/driftline/driftline/internal/freeport"
	"github.com/driftline/driftline/internal/procstat"
	"github.com/driftline/driftline/internal/testhelp"
)

// BenchmarkPull100MB measures, on one hub on loopback: the pull of a 100 MB artifact by a real
// agent process over MQTT against an HTTP GET of the same artifact from the same hub (to a file,
// synced and hashed); the bytes moved for a v2 that differs in 5% of its content; and the agent
// process's memory idle and at its peak during the pull.
//
// mqtt_MB/s is assign to active: fetch, verify and store every chunk, assemble and verify the
// file, stage, switch current. mqtt_fetch_MB/s is the fetch phase alone (until the frames
// received add up to the artifact's size). rss_* is the agent's driftline_agent_rss_bytes (file
// pages of badger's memory-mapped files included); anon_* is RssAnon from /proc (heap, stacks).
// agent_cpu_s and hub_cpu_s are the CPU seconds (user and system) the agent process and this
// process (the hub) used during the first pull: less noisy than the rates on a shared machine.
// With DRIFTLINE_PROFILE_DIR=DIR it writes CPU profiles of both and a trace of the agent during
// the first pull to DIR (agent-pull.profile, agent-pull.trace, hub-pull.profile).
func BenchmarkPull100MB(b *testing.B) {
	const size = 100 << 20
	if os.Getenv("DRIFTLINE_PROFILE_DIR") != "" {
		b.Setenv("DRIFTLINE_PPROF", "1") // the agent processes serve the profiles (main_test.go)
	}
	h := nodetest.Start(b)
	data := agenttest.RandomBytes(3, size)
	v1, d1 := h.PushModel("big", data, "", true)
	v2data := agenttest.Mutate(data, 0.05, 5)
	v2, _ := h.PushModel("big", v2data, "", true)
	keys := h.Keys()

	// HTTP: the whole artifact from the same hub, written to a file and hashed as a puller
	// would (the MQTT side also verifies and writes to disk). Three downloads, the median kept:
	// one 0.3 s sample varied by ±15% on the shared machine.
	var httpRuns []float64
	for i := range 3 {
		httpRuns = append(httpRuns, httpDownload(b, h, v1, d1, size, filepath.Join(b.TempDir(), fmt.Sprint("artifact", i))))
	}
	slices.Sort(httpRuns)
	httpSecs := httpRuns[1]

	b.ResetTimer()
	var mqttSecs, mqttFetchSecs, movedShare, rssIdle, rssPeak, anonIdle, anonPeak, agentCPU, hubCPU float64
	for i := 0; i < b.N; i++ {
		id := fmt.Sprintf("bench-%d", i)
		tok := enroll(h, id)
		cfg := agenttest.Config(b, id, tok, []string{h.MQTTURL()}, keys)
		cfg.Metrics = freeport.Addr(b)
		cfg.Heartbeat = 10_000_000_000 // 10 s: idle
		c := startChild(b, writeConfig(b, cfg), 0)
		var ms map[string]float64
		testhelp.WaitFor(b, 20*time.Second, "agent connected", func() bool {
			var err error
			ms, err = scrape(cfg.Metrics)
			return err == nil && ms[agent.MetricConnected] == 1
		})
		time.Sleep(time.Second)
		ms, _ = scrape(cfg.Metrics)
		rssIdle = ms[agent.MetricRSS]
		anonIdle = anonBytes(c.cmd.Process.Pid)

		activations := func() float64 { return ms[agent.MetricActivations+`{result="active"}`] }
		var fetchSecs, fetchedBefore float64
		pull := func(version int, want float64) float64 {
			start := time.Now()
			fetchSecs, fetchedBefore = 0, ms[agent.MetricFetchedBytes]
			assign(h, id, "big", version)
			deadline := start.Add(5 * time.Minute)
			for {
				if m, err := scrape(cfg.Metrics); err == nil {
					ms = m
					rssPeak = max(rssPeak, ms[agent.MetricRSS])
					anonPeak = max(anonPeak, anonBytes(c.cmd.Process.Pid))
					if fetchSecs == 0 && ms[agent.MetricFetchedBytes]-fetchedBefore >= float64(size) {
						fetchSecs = time.Since(start).Seconds()
					}
					if activations() >= want {
						return time.Since(start).Seconds()
					}
				}
				if time.Now().After(deadline) {
					b.Fatalf("pull of v%d did not finish", version)
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
		agentCPU0, hubCPU0 := procstat.CPU(c.cmd.Process.Pid), procstat.CPU(os.Getpid())
		profiled := profileAgent(b, cfg.Metrics)
		mqttSecs = pull(v1, 1)
		profiled()
		mqttFetchSecs = fetchSecs
		agentCPU, hubCPU = (procstat.CPU(c.cmd.Process.Pid) - agentCPU0).Seconds(), (procstat.CPU(os.Getpid()) - hubCPU0).Seconds()
		fetched1 := ms[agent.MetricFetchedBytes]
		pull(v2, 2)
		movedShare = (ms[agent.MetricFetchedBytes] - fetched1) / float64(len(v2data))
		c.stop(b)
		if testing.Verbose() {
			b.Logf("agent log:\n%s", c.out.String())
		}
	}
	b.StopTimer()
	mb := float64(size) / (1 << 20)
	b.ReportMetric(mb/mqttSecs, "mqtt_MB/s")
	b.ReportMetric(mb/mqttFetchSecs, "mqtt_fetch_MB/s")
	b.ReportMetric(mb/httpSecs, "http_MB/s")
	b.ReportMetric(httpSecs/mqttSecs, "mqtt/http")
	b.ReportMetric(100*movedShare, "v2_moved_%")
	b.ReportMetric(rssIdle/(1<<20), "rss_idle_MiB")
	b.ReportMetric(rssPeak/(1<<20), "rss_pull_MiB")
	b.ReportMetric(anonIdle/(1<<20), "anon_idle_MiB")
	b.ReportMetric(anonPeak/(1<<20), "anon_pull_MiB")
	b.ReportMetric(agentCPU, "agent_cpu_s")
	b.ReportMetric(hubCPU, "hub_cpu_s")
}

// profileAgent, with DRIFTLINE_PROFILE_DIR set, saves a 2 s CPU profile and execution trace of the agent at addr, and a CPU profile of this
// process (the hub) until the returned func is called, into that directory.
func profileAgent(b *testing.B, addr string) (stop func()) {
	dir := os.Getenv("DRIFTLINE_PROFILE_DIR")
	if dir == "" {
		return func() {}
	}
	var wg sync.WaitGroup
	for _, kind := range []string{"profile", "trace"} {
		wg.Go(func() {
			res, err := http.Get("http://" + addr + "/debug/pprof/" + kind + "?seconds=2")
			if err != nil {
				b.Logf("agent %s: %v", kind, err)
				return
			}
			defer res.Body.Close()
			f, err := os.Create(filepath.Join(dir, "agent-pull."+kind))
			if err == nil {
				_, err = io.Copy(f, res.Body)
				f.Close()
			}
			if err != nil {
				b.Logf("agent %s: %v", kind, err)
			}
		})
	}
	hub, err := os.Create(filepath.Join(dir, "hub-pull.profile"))
	if err == nil {
		err = pprof.StartCPUProfile(hub)
	}
	if err != nil {
		b.Logf("hub profile: %v", err)
	}
	return func() {
		pprof.StopCPUProfile()
		hub.Close()
		wg.Wait()
	}
}

// httpDownload fetches version v of model "big" from h over HTTP into a new file at path,
// hashing it on the way and syncing it, checks its size and digest, and returns the seconds taken.
func httpDownload(b *testing.B, h *nodetest.Hub, v int, digest string, size int64, path string) float64 {
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	start := time.Now()
	req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("%s/api/v1/models/big/versions/%d/artifact", h.URL(), v), nil)
	req.Header.Set("Authorization", "Bearer "+h.Token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	hash := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, hash), res.Body)
	res.Body.Close()
	if err == nil {
		err = f.Sync()
	}
	if err != nil || n != size || fmt.Sprintf("sha256:%x", hash.Sum(nil)) != digest {
		b.Fatalf("HTTP download: %d bytes, %v", n, err)
	}
	return time.Since(start).Seconds()
}

// anonBytes is the anonymous resident memory (heap, stacks) of process pid.
func anonBytes(pid int) float64 {
	_, anon := procstat.Memory(pid)
	return float64(anon)
}
