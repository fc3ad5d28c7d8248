package agent_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/driftline/driftline/agent/agenttest"
	"github.com/driftline/driftline/agent/config"
	"github.com/driftline/driftline/agent/modelstore"
	"github.com/driftline/driftline/agent/outbox"
	"github.com/driftline/driftline/hub/node/nodetest"
	"github.com/driftline/driftline/internal/freeport"
	"github.com/driftline/driftline/internal/testhelp"
)

// TestRandomKills SIGKILLs a real driftline-agent process at uniformly random times while the
// hub moves it between three approved versions of a model (pulls of the one not on disk,
// activations, switches back) and data flows into its POST /ingest, each POST one whole
// reporting window, so that a 200 answer means a numbered validation report is durably queued in
// the outbox. After every kill the model directory is checked as the agent checks it at start
// (modelstore.CheckLinks: current and previous verify, the file re-hashed against its marker),
// current must be a version the agent was asked to run, and the outbox is checked against the
// hub's report cursor (agenttest.CheckHeld: every number of its epoch below what it holds is at
// the hub). After the last restart the agent must reach its desired version and, stopped with
// an empty outbox, the hub must hold, over every numbering epoch, at least the answered windows
// and at most those plus the POSTs of unknown outcome, without a hole (the cursor check of
// TestReportsSurviveBrokerOutage).
//
// DRIFTLINE_KILL_SEED replays a run (the seed is printed); DRIFTLINE_KILL_ITERATIONS sets the
// number of kills (default 6, about 30 to 50 s on a loaded machine; 25 with
// DRIFTLINE_INTEGRATION=1).
func TestRandomKills(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s, err := strconv.ParseUint(os.Getenv("DRIFTLINE_KILL_SEED"), 10, 64); err == nil {
		seed = s
	}
	iterations := 6
	if os.Getenv("DRIFTLINE_INTEGRATION") == "1" {
		iterations = 25
	}
	if n, err := strconv.Atoi(os.Getenv("DRIFTLINE_KILL_ITERATIONS")); err == nil && n > 0 {
		iterations = n
	}
	t.Logf("seed %d, %d kills (replay: DRIFTLINE_KILL_SEED=%d)", seed, iterations, seed)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("FAILED with seed %d: replay with DRIFTLINE_KILL_SEED=%d DRIFTLINE_KILL_ITERATIONS=%d", seed, seed, iterations)
		}
	})
	r := rand.New(rand.NewPCG(seed, 16))

	h := nodetest.Start(t)
	const id, model = "dev-rk", "m"
	tok := enroll(h, id)
	// Three unrelated versions: of the three, one is never on disk (current and previous are),
	// and the chunk cache (at its 1 MiB minimum) keeps little of it, so moving to it is a pull.
	digests := map[int]string{}
	var versions []int
	for i := range 3 {
		v, d := h.PushModel(model, agenttest.RandomBytes(uint64(300+i), 5<<20), "", true)
		digests[v] = d
		versions = append(versions, v)
	}
	dir := t.TempDir()
	contractPath := filepath.Join(dir, "contract.json")
	if err := os.WriteFile(contractPath, []byte(`{"fields":[{"name":"temp","type":"number"}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	const rowsPerWindow = 5
	cfg := agenttest.Config(t, id, tok, []string{h.MQTTURL()}, h.Keys())
	cfg.Metrics = freeport.Addr(t)
	cfg.Contract = contractPath
	cfg.Window.Rows, cfg.Window.Seconds = rowsPerWindow, 3600 // a window per POST, never by time
	cfg.ChunkCacheBytes = 1 << 20
	cfg.Fetch.Requests, cfg.Fetch.Digests = 2, 4 // a pull long enough to be hit
	cfg.Fetch.Retry = config.Duration(2 * time.Second)
	path := writeConfig(t, cfg)

	// Warm-up, without kills: every version runs once, and the hub has acknowledged a report
	// (from then on the outbox keeps numbered reports until the hub has them).
	f := startFeeder(t, "http://"+cfg.Metrics+"/ingest", rowsPerWindow)
	c := startChild(t, path, 0)
	for _, v := range versions {
		assign(h, id, model, v)
		waitActive(t, h, id, model, v, "active")
	}
	testhelp.WaitFor(t, 60*time.Second, "the hub acknowledging reports", func() bool {
		return strings.Contains(c.out.String(), "numbered reports are kept until it has them")
	})
	began := time.Now()
	t.Logf("warm-up done")
	desired := versions[len(versions)-1]
	asked := map[int]bool{}
	for _, v := range versions {
		asked[v] = true
	}
	a := &reportAudit{t: t, h: h, id: id, stateDir: cfg.StateDir, epochs: map[uint64]uint64{}}
	phases := map[string]int{}

	for i := range iterations {
		// A move to another version, and a kill at a uniformly random time after it: during
		// start-up and recovery, a pull, an activation, a health check, or while reports wait
		// in the outbox for the hub.
		next := versions[r.IntN(len(versions))]
		for next == desired {
			next = versions[r.IntN(len(versions))]
		}
		desired = next
		assign(h, id, model, desired)
		// One kill in four lands in the first 300 ms (start-up, the model store's recovery of
		// what the last kill interrupted), the others anywhere in 3 s.
		window := 3 * time.Second
		if r.IntN(4) == 0 {
			window = 300 * time.Millisecond
		}
		delay := time.Duration(r.Int64N(int64(window)))
		// One kill in four with the data stopped: the outbox may have emptied (the hub
		// acknowledged everything), so the next start numbers a new epoch.
		quiet := r.IntN(4) == 0
		f.paused.Store(quiet)
		time.Sleep(delay) // the random kill time (not a synchronisation)
		c.kill(t)
		f.paused.Store(false)
		cur, prev, err := modelstore.CheckLinks(cfg.ModelDir, model)
		if err != nil {
			t.Fatalf("kill %d (%v after asking for v%d): the model directory is not whole: %v", i+1, delay, desired, err)
		}
		if cur.Version == 0 || !asked[cur.Version] || cur.FileDigest != digests[cur.Version] {
			t.Fatalf("kill %d: current is %+v: not a version the agent was asked to run", i+1, cur.Marker)
		}
		held := a.ended(fmt.Sprintf("kill %d", i+1))
		ph := killPhase(c.out.String())
		phases[ph]++
		t.Logf("kill %d at %v after asking for v%d, during %s: current v%d, previous v%d; %d reports held (epoch %d); %d windows answered so far",
			i+1, delay.Round(time.Millisecond), desired, ph, cur.Version, prev.Version, len(held.Numbers), held.Epoch, f.answered())
		c = startChild(t, path, 0)
	}

	// Healed: the agent reaches its desired version (reported active, or rolled_back when it is
	// older than the one it replaced).
	testhelp.WaitFor(t, 90*time.Second, fmt.Sprintf("%s@%d running on %s", model, desired, id), func() bool {
		_, ms := device(h, id)
		m, ok := ms[model]
		return ok && m.Active != nil && *m.Active == desired && (m.State == "active" || m.State == "rolled_back")
	})
	t.Logf("converged to v%d %v after the warm-up", desired, time.Since(began).Round(time.Millisecond))
	f.stop()
	// Stop it once its outbox is empty (the hub acknowledged every numbered report), until it
	// stops holding none: the hub then holds all of them.
	for {
		testhelp.WaitFor(t, 90*time.Second, "the agent's outbox empty", func() bool {
			ms, err := scrape(cfg.Metrics) // serving: its signal handler is installed too
			d, ok := ms[outbox.MetricDepth]
			return err == nil && ok && d == 0
		})
		c.stop(t)
		if held := a.ended("the final stop"); len(held.Numbers) == 0 {
			break
		}
		c = startChild(t, path, 0)
	}
	t.Logf("stopped with no report held %v after the warm-up", time.Since(began).Round(time.Millisecond))
	cur, _, err := modelstore.CheckLinks(cfg.ModelDir, model)
	if err != nil || cur.Version != desired || cur.FileDigest != digests[desired] {
		t.Fatalf("after the last stop current is %+v (%v), want whole v%d", cur.Marker, err, desired)
	}
	// Every answered window is one numbered report the hub holds, counted in the epoch the
	// agent numbered it in; none counted twice (each report is one POST).
	answered, unknown := f.answered(), f.unknown()
	var total uint64
	for _, n := range a.epochs {
		total += n
	}
	rc, _ := h.Reader().ReportCursor(id)
	var view struct {
		Reports agenttest.HubReports `json:"reports"`
	}
	h.Call(http.MethodGet, "/api/v1/devices/"+id, nil, http.StatusOK, &view)
	if view.Reports != (agenttest.HubReports{Epoch: rc.Epoch, Through: rc.Through, Pending: len(rc.Pending)}) {
		t.Fatalf("GET /devices/%s shows reports %+v, the cursor is %+v", id, view.Reports, rc)
	}
	if total < uint64(answered) || total > uint64(answered+unknown) || rc.Gap() {
		t.Fatalf("the hub holds %d numbered reports over %d epochs %v for %d windows answered and %d of unknown outcome; cursor %+v",
			total, len(a.epochs), a.epochs, answered, unknown, rc)
	}
	t.Logf("kills by what the agent was doing (its last log line about the model): %v", phases)
	t.Logf("%d kills: the hub holds %d reports over %d epochs for %d windows answered and %d of unknown outcome; cursor epoch %d through %d, no gap",
		iterations, total, len(a.epochs), answered, unknown, rc.Epoch, rc.Through)
}

// reportAudit checks, each time the agent process ends, what its outbox holds against what the
// hub holds (the hub's report cursor, as TestReportsSurviveBrokerOutage reads it), with
// agenttest.CheckHeld.
type reportAudit struct {
	t        testing.TB
	h        *nodetest.Hub
	id       string
	stateDir string
	// epochs holds, per numbering epoch that ended (the agent starts a new one when it starts
	// holding no numbered report), how many reports of it the hub holds.
	epochs map[uint64]uint64
}

// ended reads the stopped agent's outbox and checks it against the hub; when the agent's epoch
// ended, it records how many reports of it the hub holds.
func (a *reportAudit) ended(when string) outbox.Held {
	t := a.t
	t.Helper()
	held, err := agenttest.Outbox(a.stateDir, "")
	if err != nil {
		t.Fatalf("%s: read the agent's outbox: %v", when, err)
	}
	rc, err := a.h.Reader().ReportCursor(a.id)
	if err != nil {
		t.Fatal(err)
	}
	ended, err := agenttest.CheckHeld(held, agenttest.HubReports{Epoch: rc.Epoch, Through: rc.Through, Pending: len(rc.Pending)})
	if err != nil {
		t.Fatalf("%s: %v", when, err)
	}
	if ended {
		if rc.Epoch == held.Epoch {
			a.epochs[held.Epoch] = rc.Through
		} else {
			a.epochs[held.Epoch] = 0 // nothing of this epoch was numbered
		}
	}
	return held
}

// killPhase names what a killed agent was doing, from the last line of its log about the
// model: "start-up" (none yet), "reconcile" (acting on a desired state), "pull", "activation"
// (staged or switched, not yet running) or "running" (nothing to do for the model).
func killPhase(log string) string {
	phase, at := "start-up", -1
	for msg, p := range map[string]string{
		`msg="downloading model"`: "pull", `msg="model version staged"`: "activation", `msg="current switched"`: "activation",
		`msg="model activated"`: "activation", `msg="model version running"`: "running", `msg="acting on desired state"`: "reconcile",
	} {
		if i := strings.LastIndex(log, msg); i > at {
			phase, at = p, i
		}
	}
	return phase
}

// kill SIGKILLs the agent and waits until it is gone.
func (c *child) kill(t testing.TB) {
	t.Helper()
	_ = c.cmd.Process.Signal(syscall.SIGKILL)
	c.waitKilled(t, "a random time")
}

// feeder POSTs one reporting window of rows at a time to an agent's /ingest until stopped,
// counting the POSTs answered 200 (their report is in the agent's outbox) and those whose outcome
// is unknown (the agent died while answering). A refused connection (the agent is down) counts
// as neither.
type feeder struct {
	mu           sync.Mutex
	ok, nUnknown int
	done         chan struct{}
	wg           sync.WaitGroup
	// paused stops the POSTs while set.
	paused atomic.Bool
}

func startFeeder(t testing.TB, url string, rows int) *feeder {
	f := &feeder{done: make(chan struct{})}
	client := &http.Client{Timeout: 30 * time.Second}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for n := 0; ; n++ {
			select {
			case <-f.done:
				return
			case <-tick.C:
			}
			if f.paused.Load() {
				continue
			}
			var b strings.Builder
			for i := range rows {
				fmt.Fprintf(&b, "{\"temp\":%d}\n", n*rows+i)
			}
			res, err := client.Post(url+"?kind=inputs", "application/x-ndjson", strings.NewReader(b.String()))
			switch {
			case err != nil && errors.Is(err, syscall.ECONNREFUSED):
			case err != nil:
				f.mu.Lock()
				f.nUnknown++
				f.mu.Unlock()
			default:
				res.Body.Close()
				f.mu.Lock()
				switch res.StatusCode {
				case http.StatusOK:
					f.ok++
				case http.StatusServiceUnavailable:
					// No contract yet: the agent refused the rows before reading any.
				default:
					f.nUnknown++
					t.Logf("POST /ingest: %s", res.Status)
				}
				f.mu.Unlock()
			}
		}
	}()
	return f
}

func (f *feeder) stop() {
	close(f.done)
	f.wg.Wait()
}

func (f *feeder) answered() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ok
}

func (f *feeder) unknown() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.nUnknown
}
