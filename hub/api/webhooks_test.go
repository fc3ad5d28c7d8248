package api_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/driftline/driftline/hub/api"
	"github.com/driftline/driftline/hub/state"
	"github.com/driftline/driftline/hub/webhook"
	"github.com/driftline/driftline/internal/testhelp"
)

// The webhook API end to end on a real hub: create (secret shown once), list without secrets,
// test delivery signed with that secret, the delivery log, roles, bad input, delete.
func TestWebhookAPI(t *testing.T) {
	h := startHub(t, nil)
	var mu sync.Mutex
	var got []*http.Request
	var bodies [][]byte
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got, bodies = append(got, r), append(bodies, b)
		mu.Unlock()
	}))
	defer rcv.Close()

	var created api.WebhookCreated
	h.must(201, "POST", "/api/v1/webhooks", h.admin, map[string]any{"id": "ci", "url": rcv.URL, "events": []string{state.EventDriftDetected}}, &created)
	if !strings.HasPrefix(created.Secret, "whsec_") || created.ID != "ci" {
		t.Fatalf("created %+v", created)
	}
	list := h.must(200, "GET", "/api/v1/webhooks", h.admin, nil, nil)
	if strings.Contains(string(list.body), created.Secret) || !strings.Contains(string(list.body), `"ci"`) {
		t.Fatalf("list %s", list.body)
	}
	var q api.WebhookTestQueued
	h.must(202, "POST", "/api/v1/webhooks/ci/test", h.admin, nil, &q)
	testhelp.WaitFor(t, 15*time.Second, "test delivery", func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == 1 })
	mu.Lock()
	if err := webhook.Verify(created.Secret, got[0].Header.Get(webhook.HeaderSignature), bodies[0], time.Now(), time.Minute); err != nil {
		t.Fatalf("verify: %v", err)
	}
	if got[0].Header.Get(webhook.HeaderEventID) != q.EventID {
		t.Fatalf("event id %q, queued %q", got[0].Header.Get(webhook.HeaderEventID), q.EventID)
	}
	mu.Unlock()
	testhelp.WaitFor(t, 10*time.Second, "delivery log", func() bool {
		var p state.Page[state.WebhookLogEntry]
		h.must(200, "GET", "/api/v1/webhooks/ci/deliveries", h.admin, nil, &p)
		return len(p.Items) == 1 && p.Items[0].Outcome == state.OutcomeDelivered && p.Items[0].EventID == q.EventID
	})

	viewer := h.token("v", "viewer")
	if r := h.do("GET", "/api/v1/webhooks", viewer, nil); r.code != 403 {
		t.Fatalf("viewer list: %d", r.code)
	}
	for _, body := range []map[string]any{
		{"url": "ftp://x"}, {"url": rcv.URL, "events": []string{"nope"}}, {"url": rcv.URL, "secret": "short"}, {"url": rcv.URL, "bogus": 1},
	} {
		if r := h.do("POST", "/api/v1/webhooks", h.admin, body); r.code != 400 {
			t.Errorf("%v: %d %s", body, r.code, r.body)
		}
	}
	if r := h.do("POST", "/api/v1/webhooks", h.admin, map[string]any{"id": "ci", "url": rcv.URL}); r.code != 409 {
		t.Fatalf("duplicate: %d", r.code)
	}
	h.must(200, "DELETE", "/api/v1/webhooks/ci", h.admin, nil, nil)
	if r := h.do("GET", "/api/v1/webhooks/ci", h.admin, nil); r.code != 404 {
		t.Fatalf("after delete: %d", r.code)
	}
}
