package agent_test

// The agent under network and hub faults (issue 16, "The agent under faults"): a broker link
// that drops every connection every few seconds during a pull, and a hub that answers chunk
// requests slowly, out of order or not at all. In every case the pull finishes or fails with a
// clear reason, never hangs, and never activates a partial file.

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/driftline/driftline/agent"
	"github.com/driftline/driftline/agent/config"
	"github.com/driftline/driftline/shared/artifact"
	"github.com/driftline/driftline/shared/wire"
)

// dropper is a TCP proxy (toxiproxy, in process) in front of a broker that closes every
// connection through it every interval.
type dropper struct {
	p     *toxiproxy.Proxy
	addr  string // the proxy's address, read once (toxiproxy rewrites p.Listen at each start)
	drops atomic.Int64
	stop  chan struct{}
	done  chan struct{}
}

// startDropper proxies to upstream (host:port), at most rateKB KiB/s towards the client when
// rateKB > 0, and starts dropping.
func startDropper(t testing.TB, upstream string, interval time.Duration, rateKB int) *dropper {
	t.Helper()
	srv := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop())
	p := toxiproxy.NewProxy(srv, "broker", "127.0.0.1:0", upstream)
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	if rateKB > 0 {
		js := fmt.Sprintf(`{"name":"bw","type":"bandwidth","stream":"downstream","toxicity":1,"attributes":{"rate":%d}}`, rateKB)
		if _, err := p.Toxics.AddToxicJson(strings.NewReader(js)); err != nil {
			t.Fatal(err)
		}
	}
	d := &dropper{p: p, addr: p.Listen, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(d.done)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-d.stop:
				return
			case <-tick.C:
			}
			// Stop closes the listener and every connection; Start listens again on the same
			// port at once (the agent's reconnect finds it there).
			p.Stop()
			d.drops.Add(1)
			for i := 0; i < 50; i++ {
				if err := p.Start(); err == nil {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
	}()
	t.Cleanup(func() { d.halt(); p.Stop() })
	return d
}

// halt stops dropping (idempotent); the proxy keeps forwarding.
func (d *dropper) halt() {
	select {
	case <-d.stop:
	default:
		close(d.stop)
	}
	<-d.done
}

func (d *dropper) url() string { return "tcp://" + d.addr }

// distinctChunks is the number of distinct chunk digests of data.
func distinctChunks(t testing.TB, data []byte) int {
	t.Helper()
	man, err := artifact.Split(bytes.NewReader(data), func(artifact.Chunk) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, c := range man.Chunks {
		seen[c.Digest] = true
	}
	return len(seen)
}

// TestPullThroughConnectionDrops pulls an 8 MiB model from a real hub through a link that closes
// every connection every 3 s, at 1 MiB/s (at least 8 s of transfer, so at least two drops; the agent backs off up to 5 s after each drop of a connection younger than 10 s). The pull resumes over each reconnect and finishes with the
// whole file active; every chunk is verified and stored exactly once (none verified twice: a
// chunk whose answer was cut off is asked for again, one already stored never is), and while
// it runs the current link never points at a partial file.
func TestPullThroughConnectionDrops(t *testing.T) {
	if os.Getenv("DRIFTLINE_INTEGRATION") != "1" {
		t.Skip("a pull through connection drops (~20 s): runs with DRIFTLINE_INTEGRATION=1")
	}
	h := startHub(t)
	d := startDropper(t, h.n.MQTTAddr(), 3*time.Second, 1024)
	pullThroughDrops(t, h, d, nil, 8<<20)
}

// TestPullThroughConnectionDropsMosquitto is TestPullThroughConnectionDrops on a real Mosquitto
// whose every connection, the hub's as well as the agent's, is closed every 5 s, during a 6 MiB
// pull. Every 3 s, as above, an 8 MiB pull did not finish within a minute: both the hub and the
// agent back off after a short-lived connection, and chunks move only while both are connected.
func TestPullThroughConnectionDropsMosquitto(t *testing.T) {
	if os.Getenv("DRIFTLINE_INTEGRATION") != "1" {
		t.Skip("a pull through connection drops (~30 s): runs with DRIFTLINE_INTEGRATION=1")
	}
	m := startMosquitto(t)
	d := startDropper(t, strings.TrimPrefix(m.url(), "tcp://"), 5*time.Second, 1024)
	h := startHub(t, "tcp://"+m.hubUser+":"+m.hubPass+"@"+d.addr)
	pullThroughDrops(t, h, d, m, 6<<20)
}

// pullThroughDrops pulls a model of size bytes from h to an agent connected through d (and, with m,
// enrolled in Mosquitto's password file and ACL), checking what the tests above promise.
func pullThroughDrops(t *testing.T, h *hub, d *dropper, m *mosquitto, size int) {
	const id = "dev-drops"
	tok := h.enroll(id)
	if m != nil {
		m.writeFiles(map[string]string{id: tok})
		m.b.WaitAccepts(id, tok)
	}
	data := randomBytes(41, size)
	v, digest := h.pushModel("drops", data)

	cfg := agentConfig(t, id, tok, []string{d.url()}, h.keys())
	cfg.Fetch.Requests, cfg.Fetch.Digests = 2, 4 // a slower pull: many requests cut off mid-answer
	cfg.Fetch.Stall = config.Duration(30 * time.Second)
	a := startAgent(t, cfg, agent.Options{})
	waitFor(t, 30*time.Second, "online", func() bool { on, _ := h.device(id); return on })
	h.assign(id, "drops", v)

	start := time.Now()
	dropsAtStart := d.drops.Load()
	var sawPartial atomic.Bool
	watchStop := make(chan struct{})
	watchDone := make(chan struct{})
	go func() { // the current link, whenever it exists, names the whole file
		defer close(watchDone)
		for {
			select {
			case <-watchStop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			if b, err := os.ReadFile(modelFile(cfg.ModelDir, "drops")); err == nil && len(b) > 0 && !bytes.Equal(b, data) {
				sawPartial.Store(true)
			}
		}
	}()
	waitActive(t, h, id, "drops", v, "active")
	took := time.Since(start)
	close(watchStop)
	<-watchDone
	drops := d.drops.Load() - dropsAtStart
	d.halt()

	if got := fileDigest(t, modelFile(cfg.ModelDir, "drops")); got != digest {
		t.Fatalf("current file %s, artifact %s", got, digest)
	}
	if sawPartial.Load() {
		t.Fatal("the current link named a file other than the whole model during the pull")
	}
	want := distinctChunks(t, data)
	fetched := metric(t, a.reg, agent.MetricFetchedChunks)
	moved := metric(t, a.reg, agent.MetricFetchedBytes)
	t.Logf("pull of %d bytes (%d chunks) took %v through %d connection drops; %v chunks verified, %.0f frame bytes received (%.2fx the file), %v reconnects",
		len(data), want, took.Round(time.Millisecond), drops, fetched, moved, moved/float64(len(data)), metric(t, a.reg, agent.MetricConnects))
	if drops < 1 {
		t.Fatalf("%d connection drops during the pull: the test did not exercise resumption", drops)
	}
	if fetched != float64(want) {
		t.Fatalf("%v chunks verified and stored for %d distinct chunks: a verified chunk was fetched again", fetched, want)
	}
}

// TestPullFromBadHub pulls a 1 MiB model from a hub that answers chunk requests badly.
//   - slowly: each frame 400 ms late, so every request outlives its 1 s timeout and is asked
//     again; the late duplicate answers are dropped, each chunk verified and stored once;
//   - out of order: each request's digests answered last first, each object's frames too;
//   - not at all: the pull fails within its stall timeout (3 s here) with a reason naming the
//     stall, no partial file becomes current, and once the hub answers again the agent tries
//     again by itself (fetch.retry) and activates the model.
func TestPullFromBadHub(t *testing.T) {
	setup := func(t *testing.T, id string) (*fakeHub, func() wire.Reported, *runningAgent, config.Config) {
		b := startBroker(t, 0)
		h := newFakeHub(t, b, id)
		latest := h.watchReported()
		cfg := agentConfig(t, id, "any", []string{b.url()}, []string{h.publicKey()})
		cfg.Fetch.Timeout = config.Duration(time.Second)
		cfg.Fetch.Stall = config.Duration(3 * time.Second)
		cfg.Fetch.Retry = config.Duration(time.Second)
		cfg.Fetch.Digests = 4
		a := startAgent(t, cfg, agent.Options{})
		waitFor(t, 10*time.Second, "connected", a.Connected)
		return h, latest, a, cfg
	}
	active := func(t *testing.T, latest func() wire.Reported, name string, v int) {
		t.Helper()
		waitFor(t, 30*time.Second, name+" active", func() bool {
			m, ok := latest().Models[name]
			return ok && m.State == wire.StateActive && m.Active != nil && *m.Active == v
		})
	}
	data := randomBytes(51, 1<<20)
	want := distinctChunks(t, data)

	t.Run("slow", func(t *testing.T) {
		h, latest, a, cfg := setup(t, "dev-slow")
		m := h.addModel(data)
		h.mu.Lock()
		h.delay = 400 * time.Millisecond
		h.mu.Unlock()
		start := time.Now()
		h.desire(h.entry("slow", 1, m))
		active(t, latest, "slow", 1)
		if got, d := fileDigest(t, modelFile(cfg.ModelDir, "slow")), m.manifest.Digest; got != d {
			t.Fatalf("current %s, artifact %s", got, d)
		}
		asked := 0
		for d, n := range h.requested() {
			if d != m.manifestDigest {
				asked += n
			}
		}
		fetched := metric(t, a.reg, agent.MetricFetchedChunks)
		t.Logf("slow hub: active after %v; %d chunk digests asked for %d chunks; %v verified and stored", time.Since(start).Round(time.Millisecond), asked, want, fetched)
		if asked <= want {
			t.Fatalf("%d digests asked for %d chunks: no request outlived its timeout, the test did not exercise late answers", asked, want)
		}
		if fetched != float64(want) {
			t.Fatalf("%v chunks verified and stored for %d distinct chunks: a late duplicate answer was stored again", fetched, want)
		}
	})

	t.Run("out of order", func(t *testing.T) {
		h, latest, a, cfg := setup(t, "dev-order")
		m := h.addModel(data)
		h.mu.Lock()
		h.reverse = true
		h.mu.Unlock()
		h.desire(h.entry("order", 1, m))
		active(t, latest, "order", 1)
		if got, d := fileDigest(t, modelFile(cfg.ModelDir, "order")), m.manifest.Digest; got != d {
			t.Fatalf("current %s, artifact %s", got, d)
		}
		if fetched := metric(t, a.reg, agent.MetricFetchedChunks); fetched != float64(want) {
			t.Fatalf("%v chunks verified and stored for %d distinct chunks", fetched, want)
		}
	})

	t.Run("not at all", func(t *testing.T) {
		h, latest, a, cfg := setup(t, "dev-silent")
		m := h.addModel(data)
		chunks := map[string]bool{}
		for _, c := range m.manifest.Chunks {
			chunks[c.Digest] = true
		}
		var answered atomic.Int64
		h.mu.Lock()
		h.tamper = func(_, d string) ([][]byte, bool) {
			// The first two chunks are answered, then nothing: a hub that stops mid-pull.
			if chunks[d] && answered.Add(1) > 2 {
				return nil, true
			}
			return nil, false
		}
		h.mu.Unlock()
		start := time.Now()
		h.desire(h.entry("silent", 1, m))
		var failed wire.ReportedModel
		waitFor(t, 20*time.Second, "silent failed", func() bool {
			r, ok := latest().Models["silent"]
			failed = r
			return ok && r.State == wire.StateFailed
		})
		took := time.Since(start)
		t.Logf("silent hub: failed after %v: %s", took.Round(time.Millisecond), failed.LastError)
		if !strings.Contains(failed.LastError, "stalled") {
			t.Fatalf("failure reason %q does not name the stall", failed.LastError)
		}
		if took > cfg.Fetch.Stall.D()+5*time.Second {
			t.Fatalf("the pull took %v to fail, stall timeout %v", took, cfg.Fetch.Stall.D())
		}
		if failed.Active != nil {
			t.Fatalf("a version (%d) is active after a failed first pull", *failed.Active)
		}
		if _, err := os.Stat(modelFile(cfg.ModelDir, "silent")); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("current model file after a failed pull: %v", err)
		}
		if n := metric(t, a.reg, agent.MetricActivations, "result", agent.ResultActive); n != 0 {
			t.Fatalf("%v activations after a failed pull", n)
		}
		// The hub answers again: the agent tries again without a new desired state.
		h.mu.Lock()
		h.tamper = nil
		h.mu.Unlock()
		active(t, latest, "silent", 1)
		if got, d := fileDigest(t, modelFile(cfg.ModelDir, "silent")), m.manifest.Digest; got != d {
			t.Fatalf("current %s, artifact %s", got, d)
		}
		t.Logf("silent hub: active %v after the hub answered again", time.Since(start).Round(time.Millisecond))
	})
}
