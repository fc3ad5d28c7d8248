package webhook_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/driftline/driftline/hub/command"
	"github.com/driftline/driftline/hub/state"
	"github.com/driftline/driftline/hub/state/statetest"
	"github.com/driftline/driftline/hub/webhook"
	"github.com/driftline/driftline/internal/testhelp"
)

const secret = "0123456789abcdef-test-secret"

// delivery is one request a receiver got.
type delivery struct {
	header http.Header
	body   []byte
	ce     webhook.CloudEvent
}

// receiver is a real HTTP server that records deliveries and answers with the status fail
// returns for the n-th request (1-based); 0 means 200.
type receiver struct {
	srv  *httptest.Server
	mu   sync.Mutex
	got  []delivery
	fail func(n int) int
}

func newReceiver(t *testing.T, fail func(n int) int) *receiver {
	r := &receiver{fail: fail}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		var ce webhook.CloudEvent
		if err := json.Unmarshal(body, &ce); err != nil {
			t.Errorf("body is not JSON: %v", err)
		}
		r.mu.Lock()
		r.got = append(r.got, delivery{header: req.Header.Clone(), body: body, ce: ce})
		n := len(r.got)
		r.mu.Unlock()
		if r.fail != nil {
			if code := r.fail(n); code != 0 {
				http.Error(w, "not now", code)
				return
			}
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) deliveries() []delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]delivery(nil), r.got...)
}

// verify checks the signature the way the docs tell a receiver to, without the package's code:
// HMAC-SHA256 with the secret over "t" "." body, hex, and t near now.
func verify(t *testing.T, d delivery) {
	t.Helper()
	h := d.header.Get("Driftline-Signature")
	var ts, sig string
	for _, p := range strings.Split(h, ",") {
		k, v, _ := strings.Cut(p, "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			sig = v
		}
	}
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(ts + "."))
	m.Write(d.body)
	if want := hex.EncodeToString(m.Sum(nil)); sig != want {
		t.Fatalf("signature %q, want %q (header %q)", sig, want, h)
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || time.Since(time.Unix(sec, 0)).Abs() > time.Minute {
		t.Fatalf("signature timestamp %q is not now", ts)
	}
	if ct := d.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/cloudevents+json") {
		t.Fatalf("content type %q", ct)
	}
	if d.header.Get("Driftline-Event-Id") != d.ce.ID {
		t.Fatalf("event id header %q, body id %q", d.header.Get("Driftline-Event-Id"), d.ce.ID)
	}
}

type fixture struct {
	st   *statetest.Store
	disp *webhook.Dispatcher
}

func start(t *testing.T, backoff webhook.Backoff) *fixture {
	st := statetest.New(t)
	d := webhook.New(webhook.Config{Store: st, Reader: st.Reader(), NodeID: "n0", Backoff: backoff, Poll: 20 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); d.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return &fixture{st: st, disp: d}
}

func (f *fixture) addHook(t *testing.T, id, url string, events ...string) {
	f.st.Must(t, command.TypeWebhookCreate, state.WebhookCreate{ID: id, URL: url, Secret: secret, Events: events})
}

func fast(attempts int) webhook.Backoff {
	return webhook.Backoff{Base: 5 * time.Millisecond, Max: 40 * time.Millisecond, Attempts: attempts}
}

func TestSignedCloudEvent(t *testing.T) {
	f := start(t, fast(3))
	rcv := newReceiver(t, nil)
	f.addHook(t, "ci", rcv.srv.URL)
	res := f.st.Must(t, command.TypeWebhookTest, state.WebhookTest{ID: "ci"}).(state.WebhookDelivery)
	testhelp.WaitFor(t, 10*time.Second, "test event delivered", func() bool { return len(rcv.deliveries()) == 1 })
	d := rcv.deliveries()[0]
	verify(t, d)
	var raw map[string]any
	if err := json.Unmarshal(d.body, &raw); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{"specversion": "1.0", "type": state.EventTest, "source": webhook.Source, "id": res.Event.ID} {
		if raw[k] != want {
			t.Errorf("%s = %v, want %q", k, raw[k], want)
		}
	}
	if _, err := time.Parse(time.RFC3339Nano, raw["time"].(string)); err != nil {
		t.Errorf("time: %v", err)
	}
	// A tampered body or another secret does not verify with the package's Verify either.
	if err := webhook.Verify(secret, d.header.Get(webhook.HeaderSignature), d.body, time.Now(), time.Minute); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if err := webhook.Verify(secret, d.header.Get(webhook.HeaderSignature), append(d.body, ' '), time.Now(), time.Minute); err == nil {
		t.Fatal("Verify accepted a changed body")
	}
	if err := webhook.Verify(secret, d.header.Get(webhook.HeaderSignature), d.body, time.Now().Add(time.Hour), time.Minute); err == nil {
		t.Fatal("Verify accepted a stale signature")
	}
	testhelp.WaitFor(t, 5*time.Second, "log has the delivery", func() bool {
		p, _ := f.st.Reader().WebhookLog("ci", "", 10)
		return len(p.Items) == 1 && p.Items[0].Outcome == state.OutcomeDelivered && p.Items[0].Status == 204
	})
}

func TestRetriesThenDelivers(t *testing.T) {
	f := start(t, fast(5))
	// The first two attempts fail (503, then 500); the third succeeds.
	rcv := newReceiver(t, func(n int) int { return map[int]int{1: 503, 2: 500}[n] })
	f.addHook(t, "ci", rcv.srv.URL)
	f.st.Must(t, command.TypeWebhookTest, state.WebhookTest{ID: "ci"})
	testhelp.WaitFor(t, 10*time.Second, "delivered", func() bool {
		w, _ := f.st.Reader().Webhook("ci")
		return w.Delivered == 1 && w.Pending == 0
	})
	got := rcv.deliveries()
	if len(got) != 3 {
		t.Fatalf("%d requests, want 3", len(got))
	}
	for i, d := range got {
		verify(t, d)
		if d.ce.ID != got[0].ce.ID {
			t.Fatalf("attempt %d carries event %s, want the same id %s", i+1, d.ce.ID, got[0].ce.ID)
		}
		if a := d.header.Get(webhook.HeaderAttempt); a != strconv.Itoa(i+1) {
			t.Fatalf("attempt header %q, want %d", a, i+1)
		}
	}
	p, _ := f.st.Reader().WebhookLog("ci", "", 10)
	var outcomes []string
	for _, e := range p.Items {
		outcomes = append(outcomes, e.Outcome+":"+strconv.Itoa(e.Status))
	}
	if strings.Join(outcomes, ",") != "delivered:204,retrying:500,retrying:503" {
		t.Fatalf("log (newest first) %v", outcomes)
	}
}

func TestGivesUpAfterAttempts(t *testing.T) {
	f := start(t, fast(3))
	rcv := newReceiver(t, func(int) int { return 500 })
	f.addHook(t, "ci", rcv.srv.URL)
	f.st.Must(t, command.TypeWebhookTest, state.WebhookTest{ID: "ci"})
	f.st.Must(t, command.TypeWebhookTest, state.WebhookTest{ID: "ci"})
	testhelp.WaitFor(t, 10*time.Second, "both given up", func() bool {
		w, _ := f.st.Reader().Webhook("ci")
		return w.Failed == 2 && w.Pending == 0
	})
	if n := len(rcv.deliveries()); n != 6 {
		t.Fatalf("%d requests, want 3 attempts for each of 2 events", n)
	}
}

func TestBackoffDoubles(t *testing.T) {
	b := webhook.Backoff{Base: time.Second, Max: 10 * time.Second, Attempts: 9}
	var got []time.Duration
	for n := 1; n <= 6; n++ {
		got = append(got, b.Wait(n))
	}
	want := []time.Duration{1, 2, 4, 8, 10, 10}
	for i := range want {
		if got[i] != want[i]*time.Second {
			t.Fatalf("waits %v, want %v seconds", got, want)
		}
	}
}

// Events reach a webhook in the order the state machine queued them, even when an earlier one
// needs retries: the next waits for it.
func TestOrderingAcrossRetries(t *testing.T) {
	f := start(t, fast(6))
	rcv := newReceiver(t, func(n int) int {
		if n <= 2 {
			return 502
		}
		return 0
	})
	f.addHook(t, "ci", rcv.srv.URL)
	var ids []string
	for range 5 {
		d := f.st.Must(t, command.TypeWebhookTest, state.WebhookTest{ID: "ci"}).(state.WebhookDelivery)
		ids = append(ids, d.Event.ID)
	}
	testhelp.WaitFor(t, 10*time.Second, "all delivered", func() bool {
		w, _ := f.st.Reader().Webhook("ci")
		return w.Delivered == 5
	})
	var order []string
	for _, d := range rcv.deliveries() {
		if len(order) == 0 || order[len(order)-1] != d.ce.ID {
			order = append(order, d.ce.ID)
		}
	}
	if strings.Join(order, ",") != strings.Join(ids, ",") {
		t.Fatalf("received %v, queued %v", order, ids)
	}
}

// The state machine queues drift, gate and dataset events for the webhooks that want them.
func TestEventsFromCommands(t *testing.T) {
	f := start(t, fast(3))
	all := newReceiver(t, nil)
	driftOnly := newReceiver(t, nil)
	f.addHook(t, "all", all.srv.URL)
	f.addHook(t, "drift", driftOnly.srv.URL, state.EventDriftDetected)
	st := f.st
	st.ApprovedModel(t, "m", 2)
	st.Must(t, command.TypeDeviceCreate, state.DeviceCreate{ID: "d1", TokenHash: "h1", Labels: map[string]string{"site": "a"}})
	st.Must(t, command.TypeDeviceCreate, state.DeviceCreate{ID: "d2", TokenHash: "h2"})
	health := func(id string, at int64, drift bool) state.DeviceObservation {
		return state.DeviceObservation{ID: id, Health: &state.HealthSummary{Model: "m", Version: 1, Rows: 100, DatasetDrift: drift, DriftShare: 0.5, At: at}}
	}
	// d1: clean, drifted (detected), drifted again (nothing), clean (cleared). d2 drifts in the
	// same batch as d1's first clean window.
	st.Must(t, command.TypeDeviceTelemetry, state.DeviceTelemetry{Devices: []state.DeviceObservation{health("d1", 1000, false), health("d2", 1000, true)}})
	st.Must(t, command.TypeDeviceTelemetry, state.DeviceTelemetry{Devices: []state.DeviceObservation{health("d1", 2000, true)}})
	st.Must(t, command.TypeDeviceTelemetry, state.DeviceTelemetry{Devices: []state.DeviceObservation{health("d1", 3000, true)}})
	st.Must(t, command.TypeDeviceTelemetry, state.DeviceTelemetry{Devices: []state.DeviceObservation{health("d1", 4000, false)}})
	// A gate decision.
	st.Must(t, command.TypeRolloutCreate, state.RolloutCreate{ID: "r1", Model: "m", Version: 2, Devices: []string{"d1", "d2"},
		WaveSizes: []int{1, 2}, OnGateFailure: "rollback", DeviceTimeout: 600})
	st.Must(t, command.TypeRolloutTransition, state.RolloutTransition{ID: "r1", Action: state.ActStartWave})
	gates := map[string]state.GateValue{"max_drift_share": {Value: 0.6, Threshold: 0.2, Failed: true, Evidence: 1}}
	st.Must(t, command.TypeRolloutTransition, state.RolloutTransition{ID: "r1", Action: state.ActRollback, Reason: "drift", Gates: gates})
	// A dataset version with a parent.
	st.Must(t, command.TypeDatasetCreate, state.DatasetCreate{Name: "temps"})
	st.Must(t, command.TypeDatasetVersionCreate, state.DatasetVersionCreate{Dataset: "temps", SampleSHA256: "x", SampleRows: 10})
	st.Must(t, command.TypeDatasetVersionCreate, state.DatasetVersionCreate{Dataset: "temps", SampleSHA256: "y", SampleRows: 5,
		SourceURI: state.CandidateSourcePrefix + "m@1", Parents: []state.VersionRef{{Dataset: "temps", Version: 1}}})

	want := []string{
		state.EventDriftDetected + " device:d2", state.EventDriftDetected + " device:d1", state.EventDriftCleared + " device:d1",
		state.EventGateDecision + " rollout:r1", state.EventDatasetVersion + " dataset:temps@1", state.EventDatasetCandidate + " dataset:temps@2",
	}
	testhelp.WaitFor(t, 10*time.Second, "all events", func() bool { return len(all.deliveries()) == len(want) })
	var got []string
	for _, d := range all.deliveries() {
		verify(t, d)
		got = append(got, d.ce.Type+" "+d.ce.Subject)
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("events:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	testhelp.WaitFor(t, 10*time.Second, "drift-only events", func() bool { return len(driftOnly.deliveries()) == 2 })
	for _, d := range driftOnly.deliveries() {
		if d.ce.Type != state.EventDriftDetected {
			t.Fatalf("drift-only webhook got %s", d.ce.Type)
		}
	}
	ds := all.deliveries()
	var drift state.DriftEventData
	if err := json.Unmarshal(ds[1].ce.Data, &drift); err != nil || drift.Device != "d1" || drift.Labels["site"] != "a" || drift.WindowAt != 2000 || !drift.Drifted {
		t.Fatalf("drift data %s (%v)", ds[1].ce.Data, err)
	}
	var gate state.GateEventData
	if err := json.Unmarshal(ds[3].ce.Data, &gate); err != nil || gate.Decision != "fail" || gate.State != state.RolloutRolledBack || !gate.Gates["max_drift_share"].Failed {
		t.Fatalf("gate data %s (%v)", ds[3].ce.Data, err)
	}
	// The candidate's data is an OpenLineage RunEvent: parent in, new version out.
	var re map[string]any
	if err := json.Unmarshal(ds[5].ce.Data, &re); err != nil {
		t.Fatal(err)
	}
	if ds[5].ce.DataSchema != webhook.OpenLineageSchema || re["eventType"] != "COMPLETE" || re["schemaURL"] != webhook.OpenLineageSchema {
		t.Fatalf("run event %s", ds[5].ce.Data)
	}
	in := re["inputs"].([]any)[0].(map[string]any)
	out := re["outputs"].([]any)[0].(map[string]any)
	if in["name"] != "temps@1" || out["name"] != "temps@2" || in["namespace"] != "driftline" || re["run"].(map[string]any)["runId"] == "" {
		t.Fatalf("run event %s", ds[5].ce.Data)
	}
}

func TestDeleteDropsQueue(t *testing.T) {
	st := statetest.New(t) // no dispatcher: events stay queued
	st.Must(t, command.TypeWebhookCreate, state.WebhookCreate{ID: "ci", URL: "http://127.0.0.1:1/x", Secret: secret})
	st.Must(t, command.TypeWebhookTest, state.WebhookTest{ID: "ci"})
	if p, _ := st.Reader().PendingDeliveries("ci", "", 10); len(p.Items) != 1 {
		t.Fatalf("pending %d", len(p.Items))
	}
	st.Must(t, command.TypeWebhookDelete, state.WebhookDelete{ID: "ci"})
	if p, _ := st.Reader().PendingDeliveries("ci", "", 10); len(p.Items) != 0 {
		t.Fatalf("pending after delete %d", len(p.Items))
	}
	// Bad input is refused with a clear error.
	for _, c := range []state.WebhookCreate{
		{ID: "a", URL: "ftp://x", Secret: secret},
		{ID: "b", URL: "http://x", Secret: "short"},
		{ID: "c", URL: "http://x", Secret: secret, Events: []string{"nope"}},
		{ID: "d/e", URL: "http://x", Secret: secret},
	} {
		env, _ := command.New(command.TypeWebhookCreate, "", 0, "t", c)
		if _, err := st.Apply(context.Background(), env); err == nil {
			t.Errorf("accepted %+v", c)
		}
	}
}
