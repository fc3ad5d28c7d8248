package cli

import (
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/driftline/driftline/hub/webhook"
)

func TestWebhookCommands(t *testing.T) {
	h := startHub(t)
	var secret atomic.Value
	secret.Store("")
	var verified, failing atomic.Int32
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if failing.Load() != 0 {
			http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
			return
		}
		if err := webhook.Verify(secret.Load().(string), r.Header.Get(webhook.HeaderSignature), body, time.Now(), time.Minute); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		verified.Add(1)
	}))
	defer rcv.Close()

	out := h.ok(t, "webhook", "add", rcv.URL, "--id", "ci", "--event", "drift", "--event", "gate")
	m := regexp.MustCompile(`secret: (\S+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("add printed no secret: %q", out)
	}
	secret.Store(m[1])
	if !strings.Contains(out, "io.driftline.drift.detected,io.driftline.drift.cleared,io.driftline.rollout.gate") {
		t.Errorf("add output %q", out)
	}
	list := h.ok(t, "webhook", "list")
	if !strings.Contains(list, "ci") || strings.Contains(list, m[1]) {
		t.Errorf("list %q", list)
	}
	if out := h.ok(t, "webhook", "test", "ci"); !strings.Contains(out, "delivered test event") || verified.Load() != 1 {
		t.Errorf("test: %q, verified %d", out, verified.Load())
	}
	// A failing receiver: test says so and exits non-zero; deliveries shows the attempt.
	failing.Store(1)
	if r := h.run(t, "webhook", "test", "ci"); r.code == 0 || !strings.Contains(r.stderr, "retrying") {
		t.Errorf("test against a failing receiver: exit %d, %q", r.code, r.stderr)
	}
	if out := h.ok(t, "webhook", "deliveries", "ci"); !strings.Contains(out, "503") || !strings.Contains(out, "delivered") {
		t.Errorf("deliveries %q", out)
	}
	if r := h.run(t, "webhook", "add", rcv.URL, "--event", "bogus"); r.code == 0 {
		t.Errorf("add --event bogus exited 0")
	}
	h.ok(t, "webhook", "remove", "ci")
	if r := h.run(t, "webhook", "remove", "ci"); r.code == 0 {
		t.Errorf("second remove exited 0")
	}
	if r := h.run(t, "webhook", "bogus"); r.code == 0 {
		t.Errorf("webhook bogus exited 0")
	}
}
