package samples_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/driftline/driftline/agent"
	"github.com/driftline/driftline/agent/config"
	"github.com/driftline/driftline/agent/devicedb"
	"github.com/driftline/driftline/agent/pipeline"
	"github.com/driftline/driftline/agent/samples"
	"github.com/driftline/driftline/hub/node"
	"github.com/driftline/driftline/hub/node/nodetest"
	hubstate "github.com/driftline/driftline/hub/state"
	"github.com/driftline/driftline/hub/webhook"
	"github.com/driftline/driftline/internal/testhelp"
	"github.com/driftline/driftline/shared/wire"
)

// loop is a real hub and one agent with its pipeline and sampler, for a dataset whose contract
// allows collection or not.
type loop struct {
	t       *testing.T
	hub     *node.Node
	admin   string
	agent   *agent.Agent
	sampler *samples.Sampler
}

// loopOptions vary startLoopWith: a contract with a wide string column (note, for samples
// larger than one frame), and a broker URL rewrite (a proxy in front of the hub's broker).
type loopOptions struct {
	collect bool
	wide    bool
	broker  func(hubURL string) string
}

func (l *loop) send(method, path, ct string, body io.Reader, out any) int {
	req, _ := http.NewRequest(method, l.hub.URL()+path, body)
	req.Header.Set("Authorization", "Bearer "+l.admin)
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		l.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if out != nil {
		if bp, ok := out.(*[]byte); ok {
			*bp = b
		} else {
			_ = json.Unmarshal(b, out)
		}
	}
	if res.StatusCode >= 300 {
		l.t.Logf("%s %s: %d %s", method, path, res.StatusCode, b)
	}
	return res.StatusCode
}

func (l *loop) call(method, path string, body, out any) int {
	b, _ := json.Marshal(body)
	return l.send(method, path, "application/json", bytes.NewReader(b), out)
}

func (l *loop) multi(path string, fields map[string]string, file, name string, data []byte) int {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for k, v := range fields {
		mw.WriteField(k, v)
	}
	fw, _ := mw.CreateFormFile(file, name)
	fw.Write(data)
	mw.Close()
	return l.send("POST", path, mw.FormDataContentType(), &buf, nil)
}

func temps(rng *rand.Rand, n int, mean float64) string {
	var b strings.Builder
	b.WriteString("temp\n")
	for range n {
		fmt.Fprintf(&b, "%.3f\n", mean+rng.NormFloat64())
	}
	return b.String()
}

func startLoop(t *testing.T, collect bool) *loop {
	return startLoopWith(t, loopOptions{collect: collect})
}

func startLoopWith(t *testing.T, o loopOptions) *loop {
	collect := o.collect
	dir := t.TempDir()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	h := nodetest.Start(t, func(c *node.Config) { c.SampleSettle = 500 * time.Millisecond })
	hub := h.Node
	l := &loop{t: t, hub: hub, admin: h.Token}
	ext := ""
	if collect {
		ext = `,"x-driftline":{"collect":true}`
	}
	contract := `{"fields":[{"name":"temp","type":"number"}]` + ext + `}`
	rng := rand.New(rand.NewPCG(1, 2))
	ref := temps(rng, 500, 20)
	if o.wide {
		contract = `{"fields":[{"name":"temp","type":"number"},{"name":"note","type":"string"}]` + ext + `}`
		ref = strings.ReplaceAll(strings.Replace(ref, "temp\n", "temp,note\n", 1), "\n", ",x\n")
		ref = strings.Replace(ref, "temp,note,x\n", "temp,note\n", 1)
	}
	l.call("POST", "/api/v1/datasets", map[string]string{"name": "temps"}, nil)
	if code := l.multi("/api/v1/datasets/temps/versions", map[string]string{"contract": contract}, "sample", "s.csv", []byte(ref)); code != 201 {
		t.Fatalf("dataset push: %d", code)
	}
	l.call("POST", "/api/v1/models", map[string]string{"name": "m"}, nil)
	if code := l.multi("/api/v1/models/m/versions", map[string]string{"metadata": `{"trained_on":[{"dataset":"temps","version":1}]}`}, "artifact", "m.bin", []byte("weights")); code != 201 {
		t.Fatalf("model push: %d", code)
	}
	l.call("POST", "/api/v1/models/m/versions/1/approve", map[string]string{"comment": "ok"}, nil)
	var dev struct {
		Token string `json:"token"`
	}
	l.call("POST", "/api/v1/devices", map[string]string{"id": "edge-1"}, &dev)
	l.call("PUT", "/api/v1/devices/edge-1/models/m", map[string]int{"version": 1}, nil)
	cfg := config.Default()
	cfg.TrustedKeys = h.Keys()
	cfg.DeviceID, cfg.Token, cfg.Brokers = "edge-1", dev.Token, []string{hub.MQTTURL()}
	if o.broker != nil {
		cfg.Brokers = []string{o.broker(hub.MQTTURL())}
	}
	cfg.StateDir, cfg.ModelDir, cfg.Metrics = filepath.Join(dir, "state"), filepath.Join(dir, "models"), "127.0.0.1:0"
	cfg.Window.Rows = 100
	db, err := devicedb.OpenInMemory()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	a, err := agent.New(cfg, db.Root(), agent.Options{Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	pl, err := pipeline.Attach(a, pipeline.AttachOptions{Ingest: true})
	if err != nil {
		t.Fatal(err)
	}
	sm, err := samples.Attach(a, pl, nil)
	if err != nil {
		t.Fatal(err)
	}
	l.sampler = sm
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	l.agent = a
	testhelp.WaitFor(t, 30*time.Second, "the model with its contract on the agent", func() bool {
		ms, _ := a.ActiveModels()
		return len(ms) > 0 && len(ms[0].Contract) > 0
	})
	return l
}

// ingest posts shifted readings (mean 40 against a reference around 20): each 100 rows close a
// drifted window.
func (l *loop) ingestShifted(windows int) {
	rng := rand.New(rand.NewPCG(3, 4))
	body := strings.TrimPrefix(temps(rng, 100*windows, 40), "temp\n")
	var jl strings.Builder
	for i, line := range strings.Fields(body) {
		if i%50 == 7 {
			jl.WriteString("{\"temp\":\"hot\"}\n") // invalid: not a number
		}
		fmt.Fprintf(&jl, "{\"temp\":%s}\n", line)
	}
	req, _ := http.NewRequest("POST", "http://"+l.agent.MetricsAddr()+"/ingest", strings.NewReader(jl.String()))
	req.Header.Set("Content-Type", "application/x-ndjson")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		l.t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		l.t.Fatalf("ingest: %d", res.StatusCode)
	}
}

// watch subscribes to every topic of the device, as the hub does, and records kinds seen.
func (l *loop) watch() func() map[wire.Kind]int {
	var mu sync.Mutex
	seen := map[wire.Kind]int{}
	c := paho.NewClient(paho.NewClientOptions().AddBroker(l.hub.MQTTURL()).SetClientID("@admin:admin").
		SetUsername("admin").SetPassword(l.admin))
	if tk := c.Connect(); !tk.WaitTimeout(5*time.Second) || tk.Error() != nil {
		l.t.Fatalf("connect watcher: %v", tk.Error())
	}
	l.t.Cleanup(func() { c.Disconnect(100) })
	// Exact topics of the kinds the tests count, not the device's "#": mochi 2.7.9 reads the
	// retained messages a wildcard subscription matches without a lock while the agent and the
	// hub publish retained status and desired states (mochi-mqtt/server#200, docs/pitfalls.md).
	filters := map[string]byte{}
	for _, k := range []wire.Kind{wire.KindValidation, wire.KindDrift, wire.KindSample, wire.KindSamplePart, wire.KindSampleAck} {
		filters[wire.Default().DevicePrefix("edge-1")+k.String()] = 1
	}
	tk := c.SubscribeMultiple(filters, func(_ paho.Client, m paho.Message) {
		k, _, _, err := wire.Default().Parse(m.Topic())
		if err == nil {
			mu.Lock()
			seen[k]++
			mu.Unlock()
		}
	})
	if !tk.WaitTimeout(5*time.Second) || tk.Error() != nil {
		l.t.Fatalf("subscribe: %v", tk.Error())
	}
	return func() map[wire.Kind]int {
		mu.Lock()
		defer mu.Unlock()
		out := map[wire.Kind]int{}
		for k, v := range seen {
			out[k] = v
		}
		return out
	}
}

// A contract that does not allow collection: drifted windows are reported, and no sample is
// ever published (checked on the broker).
func TestNoCollectionWithoutOptIn(t *testing.T) {
	l := startLoop(t, false)
	seen := l.watch()
	l.ingestShifted(4)
	// The outbox sends in order: a sample of windows 1-3 would have come before window 4's
	// validation report.
	testhelp.WaitFor(t, 20*time.Second, "four validation reports on the wire", func() bool { return seen()[wire.KindValidation] >= 4 })
	if n := seen()[wire.KindDrift]; n < 3 {
		t.Fatalf("%d drift reports: the windows did not drift", n)
	}
	if n := seen()[wire.KindSample] + seen()[wire.KindSamplePart]; n != 0 {
		t.Fatalf("%d sample messages left a device whose contract does not allow collection", n)
	}
	var page hubstate.Page[hubstate.DatasetVersion]
	l.call("GET", "/api/v1/datasets/temps/versions", nil, &page)
	if len(page.Items) != 1 {
		t.Fatalf("%d dataset versions", len(page.Items))
	}
}

// The loop: drifted windows on a device whose contract allows collection become a candidate
// dataset version, derived_from the training version and collected_on the device, its rows
// downloadable, and a webhook receives the candidate event with an OpenLineage RunEvent.
func TestDriftBecomesCandidate(t *testing.T) {
	l := startLoop(t, true)
	var mu sync.Mutex
	var events []webhook.CloudEvent
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ce webhook.CloudEvent
		b, _ := io.ReadAll(r.Body)
		if json.Unmarshal(b, &ce) == nil {
			mu.Lock()
			events = append(events, ce)
			mu.Unlock()
		}
	}))
	defer rcv.Close()
	if code := l.call("POST", "/api/v1/webhooks", map[string]any{"id": "ci", "url": rcv.URL, "events": []string{hubstate.EventDatasetCandidate}}, nil); code != 201 {
		t.Fatalf("webhook: %d", code)
	}
	seen := l.watch()
	l.ingestShifted(3)
	var page hubstate.Page[hubstate.DatasetVersion]
	testhelp.WaitFor(t, 30*time.Second, "a candidate dataset version", func() bool {
		l.call("GET", "/api/v1/datasets/temps/versions", nil, &page)
		return len(page.Items) == 2
	})
	if seen()[wire.KindSamplePart] == 0 || seen()[wire.KindSample] != 0 {
		t.Fatalf("sample frames on the wire: %d, whole-sample messages %d; want frames only", seen()[wire.KindSamplePart], seen()[wire.KindSample])
	}
	cand := page.Items[1]
	if !hubstate.IsCandidate(cand) || cand.SampleRows == 0 || cand.SampleRows > 3*samples.DefaultMaxRows || len(cand.Parents) != 1 || cand.Parents[0].Version != 1 {
		t.Fatalf("candidate %+v", cand)
	}
	var g hubstate.Graph
	l.call("GET", "/api/v1/lineage?node=dataset:temps@2&direction=both&depth=1", nil, &g)
	b, _ := json.Marshal(g)
	if !bytes.Contains(b, []byte(`"collected_on"`)) || !bytes.Contains(b, []byte(`"device:edge-1"`)) || !bytes.Contains(b, []byte(`"derived_from"`)) {
		t.Fatalf("lineage %s", b)
	}
	checkLoopLineage(t, l)
	var rows []byte
	if code := l.send("GET", "/api/v1/datasets/temps/versions/2/sample", "", nil, &rows); code != 200 || int64(bytes.Count(rows, []byte("\n"))) != cand.SampleRows {
		t.Fatalf("sample rows: %d, %d lines for %d rows", code, bytes.Count(rows, []byte("\n")), cand.SampleRows)
	}
	var bad []byte
	if code := l.send("GET", "/api/v1/datasets/temps/versions/2/sample?invalid=true", "", nil, &bad); code != 200 || !bytes.Contains(bad, []byte(`{"temp":"hot"}`)) {
		t.Fatalf("invalid rows: %d %s", code, bad)
	}
	testhelp.WaitFor(t, 20*time.Second, "the candidate webhook event", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(events) == 1
	})
	if events[0].Type != hubstate.EventDatasetCandidate || events[0].Subject != "dataset:temps@2" || events[0].DataSchema != webhook.OpenLineageSchema {
		t.Fatalf("event %+v", events[0])
	}
}

// checkLoopLineage walks down from the training data and expects the loop: dataset:temps@1 ->
// model:m@1 -> device:edge-1 -> a drifted window -> the candidate dataset:temps@2, every hop an
// edge of the graph.
func checkLoopLineage(t *testing.T, l *loop) {
	t.Helper()
	var g hubstate.Graph
	if code := l.call("GET", "/api/v1/lineage?node=dataset:temps@1&direction=down&depth=6", nil, &g); code != 200 {
		t.Fatalf("lineage: %d", code)
	}
	kinds := map[string]string{}
	for _, n := range g.Nodes {
		kinds[n.ID] = n.Kind
	}
	has := func(from, kind, to string) bool {
		for _, e := range g.Edges {
			if e.From == from && e.Kind == kind && e.To == to {
				return true
			}
		}
		return false
	}
	var windows []hubstate.LineageNode
	for _, n := range g.Nodes {
		if n.Kind == hubstate.KindWindow {
			windows = append(windows, n)
		}
	}
	b, _ := json.Marshal(g)
	if len(windows) == 0 {
		t.Fatalf("no drifted window in the lineage below the training data: %s", b)
	}
	if !has("model:m@1", hubstate.EdgeTrainedOn, "dataset:temps@1") || !has("device:edge-1", hubstate.EdgeRuns, "model:m@1") {
		t.Fatalf("training data -> model -> device missing: %s", b)
	}
	for _, w := range windows {
		if reason, _ := w.Attr["reason"].(string); !strings.HasPrefix(w.ID, "window:edge-1/m@1/") || reason == "" || w.Attr["model"] != "model:m@1" {
			t.Fatalf("window node %+v", w)
		}
		if !has(w.ID, hubstate.EdgeObservedOn, "device:edge-1") || !has("dataset:temps@2", hubstate.EdgeSampledFrom, w.ID) {
			t.Fatalf("device -> %s -> candidate missing: %s", w.ID, b)
		}
	}
	var w hubstate.Graph
	if code := l.call("GET", "/api/v1/lineage?node="+windows[0].ID+"&direction=both&depth=1", nil, &w); code != 200 || len(w.Nodes) != 3 {
		t.Fatalf("lineage of the window itself: %d %+v", code, w)
	}
}

// cutProxy forwards TCP connections to an MQTT broker and, once, drops the connection carrying
// the nth occurrence of a byte pattern from client to broker before forwarding it: the broker
// never sees that message, and the client reconnects through the proxy.
type cutProxy struct {
	t       *testing.T
	ln      net.Listener
	target  string
	pattern []byte
	nth     int

	mu   sync.Mutex
	seen int
	cut  bool
}

func newCutProxy(t *testing.T, target string, pattern string, nth int) *cutProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{t: t, ln: ln, target: target, pattern: []byte(pattern), nth: nth}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() { defer wg.Done(); p.serve(c) }()
		}
	}()
	return p
}

func (p *cutProxy) url() string { return "tcp://" + p.ln.Addr().String() }

func (p *cutProxy) didCut() bool { p.mu.Lock(); defer p.mu.Unlock(); return p.cut }

func (p *cutProxy) serve(c net.Conn) {
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	done := make(chan struct{}, 2)
	go func() { io.Copy(c, up); c.Close(); done <- struct{}{} }()
	go func() {
		defer func() { up.Close(); c.Close(); done <- struct{}{} }()
		buf := make([]byte, 32<<10)
		tail := []byte{} // the end of what was forwarded, for a pattern split across reads
		for {
			n, err := c.Read(buf)
			if n > 0 {
				win := append(append([]byte(nil), tail...), buf[:n]...)
				hits := bytes.Count(win, p.pattern)
				p.mu.Lock()
				cutNow := !p.cut && p.seen+hits >= p.nth
				if cutNow {
					p.cut = true
				}
				p.seen += hits
				p.mu.Unlock()
				if cutNow {
					return // the message with the nth occurrence never reaches the broker
				}
				if _, werr := up.Write(buf[:n]); werr != nil {
					return
				}
				if k := len(p.pattern) - 1; len(win) > k {
					tail = append(tail[:0], win[len(win)-k:]...)
				} else {
					tail = append(tail[:0], win...)
				}
			}
			if err != nil {
				return
			}
		}
	}()
	<-done
	<-done
}

// TestLargeSampleUploadResumesAfterDrop: a drifted window's sample larger than one frame is
// uploaded as several chunk frames; the connection drops while the second frame is on its way
// (a proxy cuts it before the broker sees it). The agent reconnects and sends only what the
// broker never acknowledged: the hub completes the upload with the first frame it already
// holds (each frame crosses the broker once), checks the digest, stages the sample into a
// candidate and acknowledges it, and the agent forgets the upload.
func TestLargeSampleUploadResumesAfterDrop(t *testing.T) {
	var proxy *cutProxy
	l := startLoopWith(t, loopOptions{collect: true, wide: true, broker: func(hubURL string) string {
		proxy = newCutProxy(t, strings.TrimPrefix(hubURL, "tcp://"), "edge-1/sample_part", 2)
		return proxy.url()
	}})
	seen := l.watch()

	// One drifted window of 100 rows, each with a 4 KB note: a sample of about 400 KB, two
	// frames (wire.MaxPartSize is 256 KiB).
	rng := rand.New(rand.NewPCG(5, 6))
	var jl strings.Builder
	for range 100 {
		note := make([]byte, 2048)
		for i := range note {
			note[i] = byte(rng.IntN(256))
		}
		fmt.Fprintf(&jl, "{\"temp\":%.3f,\"note\":%q}\n", 40+rng.NormFloat64(), hex.EncodeToString(note))
	}
	req, _ := http.NewRequest("POST", "http://"+l.agent.MetricsAddr()+"/ingest", strings.NewReader(jl.String()))
	req.Header.Set("Content-Type", "application/x-ndjson")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("ingest: %d", res.StatusCode)
	}

	var page hubstate.Page[hubstate.DatasetVersion]
	testhelp.WaitFor(t, 60*time.Second, "a candidate dataset version from the resumed upload", func() bool {
		l.call("GET", "/api/v1/datasets/temps/versions", nil, &page)
		return len(page.Items) == 2
	})
	if !proxy.didCut() {
		t.Fatal("the proxy never cut the connection: the upload was not interrupted")
	}
	if cand := page.Items[1]; cand.SampleRows != 100 {
		t.Fatalf("candidate of %d rows, want the window's 100", cand.SampleRows)
	}
	testhelp.WaitFor(t, 20*time.Second, "the agent's upload acknowledged", func() bool { return len(l.sampler.Uploader().Pending()) == 0 })
	if parts := seen()[wire.KindSamplePart]; parts != 2 {
		t.Fatalf("%d frames crossed the broker, want 2: the upload restarted instead of resuming", parts)
	}
	if seen()[wire.KindSampleAck] == 0 {
		t.Fatal("no sample ack on the wire")
	}
}
