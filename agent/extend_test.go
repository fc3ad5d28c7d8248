package agent_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/common/expfmt"
	pmodel "github.com/prometheus/common/model"

	"github.com/driftline/driftline/agent"
	"github.com/driftline/driftline/agent/agenttest"
	"github.com/driftline/driftline/agent/config"
	"github.com/driftline/driftline/agent/outbox"
	"github.com/driftline/driftline/internal/testhelp"
	"github.com/driftline/driftline/shared/wire"
)

// TestExtensionPoints adds a stand-in pipeline the way agent/pipeline does: data messages
// reach OnData in order, POST /ingest shares the metrics listener, reports go out through
// Report, its counters ride the heartbeat, its Run stops with the agent, and GET
// /metrics is valid Prometheus text with every metric the agent promises.
func TestExtensionPoints(t *testing.T) {
	const id = "dev-ext"
	var hbMu sync.Mutex
	var lastHB wire.Heartbeat
	var validations atomic.Int64
	b := startBroker(t, 0, func(s *mqtt.Server) {
		topics := wire.Default()
		s.Subscribe(topics.Heartbeat(id), 1, func(_ *mqtt.Client, _ packets.Subscription, pk packets.Packet) {
			if hb, err := wire.DecodeHeartbeat(pk.Payload); err == nil {
				hbMu.Lock()
				lastHB = hb
				hbMu.Unlock()
			}
		})
		s.Subscribe(topics.Validation(id), 2, func(*mqtt.Client, packets.Subscription, packets.Packet) { validations.Add(1) })
	})
	cfg := agenttest.Config(t, id, "any", []string{b.url()}, []string{agenttest.Key(t)})
	cfg.Metrics = "127.0.0.1:0"
	cfg.Heartbeat = 200_000_000 // 200 ms

	// Built by hand (not startAgent) to add the extension between New and Run.
	x := &standIn{}
	ra := startAgentWith(t, cfg, func(a *agent.Agent) {
		if err := a.AddExtension(x); err != nil {
			t.Fatal(err)
		}
		if err := x.host.State.Sub("quarantine").Set([]byte("k"), []byte("v")); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			x.mu.Lock()
			defer x.mu.Unlock()
			want := []string{"r1", "r2", "r3", "ingest:row"}
			if fmt.Sprint(x.got) != fmt.Sprint(want) {
				t.Errorf("pipeline saw %q, want %q", x.got, want)
			}
			if !x.stopped {
				t.Error("the extension's Run did not return")
			}
		})
	})
	testhelp.WaitFor(t, 10*time.Second, "connected", ra.Connected)
	testhelp.WaitFor(t, 10*time.Second, "local endpoints served", func() bool { return ra.MetricsAddr() != "" })
	local := ra.MetricsAddr()
	testhelp.WaitFor(t, 10*time.Second, "data subscription", func() bool { return agenttest.Metric(t, ra.Reg, agent.MetricConnects) >= 1 })
	// The agent subscribes to its data topic on connect without waiting: wait for the broker.
	testhelp.WaitFor(t, 10*time.Second, "data topic subscribed", func() bool {
		return len(b.s.Topics.Subscribers(wire.Default().Data(id)).Subscriptions) > 0
	})
	for _, r := range []string{"r1", "r2", "r3"} {
		if err := b.s.Publish(wire.Default().Data(id), []byte(r), false, 1); err != nil {
			t.Fatal(err)
		}
	}
	testhelp.WaitFor(t, 5*time.Second, "data handled", func() bool {
		hbMu.Lock()
		defer hbMu.Unlock()
		return lastHB.RecordsSeen >= 3 && lastHB.RecordsInvalid == 1
	})
	res, err := http.Post("http://"+local+"/ingest", "text/csv", bytes.NewReader([]byte("row")))
	if err != nil || res.StatusCode != http.StatusAccepted {
		t.Fatalf("POST /ingest: %v %v", res, err)
	}
	res.Body.Close()

	// Report: the device's own report topics only.
	topics := wire.Default()
	now := time.Now().UnixMilli()
	v, _ := wire.Encode(wire.Validation{Header: wire.Header{DeviceID: id, TS: now}, Window: wire.Window{Index: 1, WindowStart: now, WindowEnd: now}, ValidShare: 1})
	if err := ra.Report(wire.KindValidation, topics.Validation(id), v); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []struct {
		k     wire.Kind
		topic string
	}{{wire.KindValidation, topics.Validation("other")}, {wire.KindDesired, topics.Desired(id)}, {wire.KindDrift, topics.Validation(id)}, {wire.KindChunk, topics.Chunk(id)}, {wire.KindValidation, "elsewhere/x"}} {
		if err := ra.Report(bad.k, bad.topic, v); err == nil {
			t.Errorf("Report(%v, %s) accepted", bad.k, bad.topic)
		}
	}
	testhelp.WaitFor(t, 5*time.Second, "validation report", func() bool { return validations.Load() == 1 })
	if ms, err := ra.ActiveModels(); err != nil || len(ms) != 0 {
		t.Fatalf("ActiveModels with no model: %v %v", ms, err)
	}

	// GET /metrics: valid text format, every promised name.
	res, err = http.Get("http://" + local + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	parser := expfmt.NewTextParser(pmodel.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("GET /metrics is not valid Prometheus text: %v\n%s", err, body)
	}
	for _, name := range []string{agent.MetricFetchedBytes, agent.MetricFetchedChunks, agent.MetricChunksReused, agent.MetricActivations,
		agent.MetricRejected, agent.MetricRSS, agent.MetricConnected, agent.MetricConnects, agent.MetricInfo,
		outbox.MetricDepth, outbox.MetricBytes, outbox.MetricDropped} {
		if fams[name] == nil {
			t.Errorf("GET /metrics lacks %s", name)
		}
	}
	if p, err := exec.LookPath("promtool"); err == nil {
		cmd := exec.Command(p, "check", "metrics")
		cmd.Stdin = bytes.NewReader(body)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("promtool check metrics: %v\n%s", err, out)
		}
	} else {
		t.Log("promtool not installed: format checked with the Go parser only")
	}
	ra.Stop() // returns only once the extension goroutine has stopped
}

// standIn is a stand-in pipeline: it keeps what it is given and serves POST /ingest.
type standIn struct {
	agent.ExtensionBase
	host    agent.Host
	mu      sync.Mutex
	got     []string
	stopped bool
}

func (x *standIn) ID() string { return "stand-in" }

func (x *standIn) Provides(ev agent.Event) bool {
	return ev == agent.EventData || ev == agent.EventStats
}

func (x *standIn) Init(h agent.Host) error {
	x.host = h
	h.Mux.Handle("POST /ingest", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		x.mu.Lock()
		x.got = append(x.got, "ingest:"+string(body))
		x.mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	}))
	return nil
}

func (x *standIn) OnData(p []byte) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.got = append(x.got, string(p))
}

func (x *standIn) Stats() agent.PipelineStats {
	x.mu.Lock()
	defer x.mu.Unlock()
	return agent.PipelineStats{RecordsSeen: int64(len(x.got)), RecordsInvalid: 1}
}

func (x *standIn) Run(ctx context.Context) {
	<-ctx.Done()
	x.mu.Lock()
	x.stopped = true
	x.mu.Unlock()
}

// startAgentWith is startAgent with a hook between New and Run.
func startAgentWith(t testing.TB, cfg config.Config, hook func(a *agent.Agent)) *agenttest.Agent {
	return agenttest.StartHook(t, cfg, agent.Options{}, hook)
}
