package dashboard_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/labstack/echo/v4"

	"github.com/driftline/driftline/hub/dashboard"
	"github.com/driftline/driftline/internal/testhelp"
)

// browser is one headless Chromium with its console collected.
type browser struct {
	t       *testing.T
	ctx     context.Context
	mu      sync.Mutex
	console []chromedp.ConsoleMessage
	shots   string
}

// startBrowser starts headless Chromium (skipped loudly when missing, failed under
// DRIFTLINE_INTEGRATION=1) and collects what the page writes to its console.
func startBrowser(t *testing.T) *browser {
	t.Helper()
	exe := needTool(t, "chromium", "chromium-browser", "google-chrome")
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe), chromedp.Flag("headless", "new"), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.WindowSize(1366, 900), chromedp.UserDataDir(t.TempDir()))
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	ctx, cancel := chromedp.NewContext(alloc, chromedp.WithLogf(t.Logf))
	t.Cleanup(cancel)
	b := &browser{t: t, ctx: ctx, shots: os.Getenv("DRIFTLINE_ARTIFACTS")}
	if b.shots == "" {
		b.shots = t.TempDir()
	}
	if err := os.MkdirAll(b.shots, 0o755); err != nil {
		t.Fatal(err)
	}
	b.listen(ctx)
	return b
}

// loadDashboard serves only the dashboard (no hub) and loads it, for tests of its modules.
func (b *browser) loadDashboard() {
	b.t.Helper()
	e := echo.New()
	dashboard.Register(e)
	srv := httptest.NewServer(e)
	b.t.Cleanup(srv.Close)
	b.do(b.ctx, "load the dashboard", chromedp.Navigate(srv.URL+"/"), chromedp.WaitVisible(chromedp.ID("token")))
}

// listen collects the console of the tab of ctx.
func (b *browser) listen(ctx context.Context) {
	msgs := chromedp.Console(ctx)
	go func() {
		for m, err := range msgs {
			if err != nil {
				return
			}
			b.mu.Lock()
			b.console = append(b.console, m)
			b.mu.Unlock()
		}
	}()
}

// do runs actions with a time limit.
func (b *browser) do(ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(tctx, actions...); err != nil {
		b.dump(ctx)
		b.t.Fatalf("%s: %v", what, err)
	}
}

// dump logs the page's console, status line and body text after a failed step.
func (b *browser) dump(ctx context.Context) {
	b.mu.Lock()
	for _, m := range b.console {
		b.t.Logf("browser console: %s (%s:%d)", m, m.URL, m.Line)
	}
	b.mu.Unlock()
	tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	body, err := chromedp.Run(tctx, chromedp.Evaluate[string](`location.href + '\n' + document.body.innerText`))
	b.t.Logf("page after the failure (%v):\n%.3000s", err, body)
}

// eval evaluates a JavaScript expression (a promise is awaited) and returns its value.
func eval[T any](b *browser, ctx context.Context, expr string) T {
	b.t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(tctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// wait polls a JavaScript predicate until it is truthy.
func (b *browser) wait(ctx context.Context, what, predicate string) {
	b.t.Helper()
	b.do(ctx, "wait for "+what, chromedp.Poll[chromedp.Void](predicate, chromedp.WithPollingTimeout(20*time.Second), chromedp.WithPollingInterval(50*time.Millisecond)))
}

// screenshot saves the whole page as NAME.png in the artifacts directory.
func (b *browser) screenshot(ctx context.Context, name string) {
	b.t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	png, err := chromedp.Run(tctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	p := filepath.Join(b.shots, name+".png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("screenshot %s", p)
}

// login signs in on a fresh load of the dashboard and waits for the first page.
func (b *browser) login(ctx context.Context, base, token string) {
	b.t.Helper()
	b.do(ctx, "sign in",
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(chromedp.ID("token")),
		chromedp.SendKeys(chromedp.ID("token"), token),
		chromedp.Click(chromedp.CSS(`#login-form button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.ID("nav")))
}

// open goes to a page by its hash and waits until it has loaded its data at least once.
func (b *browser) open(ctx context.Context, hash, page string) {
	b.t.Helper()
	b.do(ctx, "open "+hash, chromedp.Evaluate[chromedp.Void](fmt.Sprintf("location.hash = %q", hash)))
	b.wait(ctx, page+" loaded", fmt.Sprintf(`document.querySelector('#page.page-%s')?.dataset.ready >= 1`, page))
	if bad := eval[string](b, ctx, `(document.querySelector('#page').innerText.match(/\bnull\b|\bundefined\b|\bNaN\b|\[object /) || [''])[0]`); bad != "" {
		b.t.Errorf("%s shows %q: a value rendered as text by mistake", hash, bad)
	}
}

// problems returns what the page logged as an error or warning, and exceptions. Failed
// requests (the network source) are expected where the dashboard probes roles or reads an
// endpoint that may not exist yet; they are logged, not counted.
func (b *browser) problems() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for _, m := range b.console {
		switch {
		case m.Source == "network":
			b.t.Logf("browser network log: %s", m)
		case m.IsException() || m.Type == chromedp.ConsoleError || m.Type == chromedp.ConsoleWarning:
			out = append(out, fmt.Sprintf("%s (%s:%d)", m, m.URL, m.Line))
		default:
			b.t.Logf("browser console: %s", m)
		}
	}
	return out
}

func text(b *browser, ctx context.Context, selector string) string {
	b.t.Helper()
	return eval[string](b, ctx, fmt.Sprintf(`document.querySelector(%q)?.textContent ?? ''`, selector))
}

// TestDashboardInBrowser drives the dashboard in headless Chromium against a real hub: sign in
// with the admin token, open every page, compare live numbers with the API, pause a rollout
// from its page, and check roles, the audit chain, the phone layout and the console.
func TestDashboardInBrowser(t *testing.T) {
	b := startBrowser(t)
	h := startHub(t)
	f := h.seed()
	// Two devices report as agents running the rolled-out version: one clean, one drifting.
	h.reportAsAgent(f.Devices[0], f.Tokens[f.Devices[0]], f.Model, f.Version, 0, 0)
	h.reportAsAgent(f.Devices[1], f.Tokens[f.Devices[1]], f.Model, f.Version, 120, 0.5)
	testhelp.WaitFor(t, 15*time.Second, "device reports applied", func() bool {
		var d struct {
			Online bool            `json:"online"`
			Health *map[string]any `json:"health"`
		}
		h.call(http.MethodGet, "/api/v1/devices/"+f.Devices[1], nil, http.StatusOK, &d)
		return d.Online && d.Health != nil
	})
	ctx := b.ctx
	b.login(ctx, h.URL, h.token)
	if got := text(b, ctx, "#role"); got != "admin" {
		t.Fatalf("role badge %q, want admin", got)
	}

	// Fleet: the counts on the page are the API's, and a device added later shows up by polling.
	b.open(ctx, "#/fleet", "fleet")
	var devices struct {
		Items []struct {
			ID     string `json:"id"`
			Online bool   `json:"online"`
		} `json:"items"`
	}
	h.call(http.MethodGet, "/api/v1/devices", nil, http.StatusOK, &devices)
	online := 0
	for _, d := range devices.Items {
		if d.Online {
			online++
		}
	}
	if got, want := text(b, ctx, "#fleet-total"), fmt.Sprint(len(devices.Items)); got != want {
		t.Errorf("fleet total %q, API has %s devices", got, want)
	}
	if got, want := text(b, ctx, "#fleet-online"), fmt.Sprint(online); got != want || online == 0 {
		t.Errorf("fleet online %q, API says %s (the test's agents make it at least 1)", got, want)
	}
	if got := text(b, ctx, "#fleet-versions"); got != "1" {
		t.Errorf("model versions running %q, want 1 (%s@%d)", got, f.Model, f.Version)
	}
	b.screenshot(ctx, "fleet")
	h.call(http.MethodPost, "/api/v1/devices", map[string]any{"id": "late-1", "labels": map[string]string{"site": "rome"}}, http.StatusCreated, nil)
	b.wait(ctx, "the polled fleet to show the new device", fmt.Sprintf(`document.querySelector('#fleet-total')?.textContent === '%d'`, len(devices.Items)+1))

	b.open(ctx, "#/fleet?selector=site%3Dberlin", "fleet")
	if got := text(b, ctx, "#fleet-total"); got != "2" {
		t.Errorf("fleet total with selector site=berlin: %q, want 2", got)
	}
	b.open(ctx, "#/device/"+f.Devices[1], "device")
	if got := text(b, ctx, "#page h1"); !strings.Contains(got, f.Devices[1]) {
		t.Errorf("device page heading %q", got)
	}
	if got := text(b, ctx, "#page"); !strings.Contains(got, "120 (12.0%)") || !strings.Contains(got, "50.0%") {
		t.Errorf("device page lacks the reported invalid rows or drift share: %.500s", got)
	}
	b.screenshot(ctx, "device")

	// Registry: the approved version with its approval and training data.
	b.open(ctx, "#/registry", "registry")
	row := fmt.Sprintf(`[data-model=%q] tr[data-version="%d"]`, f.Model, f.Version)
	if got := text(b, ctx, row); !strings.Contains(got, "approved") || !strings.Contains(got, "temps@1") || !strings.Contains(got, "passes offline eval") {
		t.Errorf("registry row %q lacks status, training data or approval", got)
	}
	b.do(ctx, "set alias", chromedp.SetValue(chromedp.ID("alias-name"), "production"), chromedp.SetValue(chromedp.ID("alias-version"), fmt.Sprint(f.Version)),
		chromedp.Click(chromedp.CSS(`form[aria-label^="Point an alias"] button`)))
	b.wait(ctx, "alias on the version row", fmt.Sprintf(`document.querySelector(%q)?.textContent.includes('production')`, row))
	var alias struct {
		Version int `json:"version"`
	}
	h.call(http.MethodGet, "/api/v1/models/"+f.Model+"/aliases/production", nil, http.StatusOK, &alias)
	if alias.Version != f.Version {
		t.Errorf("alias production -> %d, want %d", alias.Version, f.Version)
	}
	b.screenshot(ctx, "registry")

	// A second version, registered but not approved, is approved from its row's button.
	var v2 struct {
		Version int `json:"version"`
	}
	h.multipart("/api/v1/models/"+f.Model+"/versions", map[string]string{"metadata": `{"format":"onnx","trained_on":[{"dataset":"temps","version":1}]}`},
		map[string][2]string{"artifact": {"model.onnx", strings.Repeat("weights2", 5000)}}, http.StatusCreated, &v2)
	row2 := fmt.Sprintf(`[data-model=%q] tr[data-version="%d"]`, f.Model, v2.Version)
	b.wait(ctx, "the new version listed as registered", fmt.Sprintf(`document.querySelector(%q)?.textContent.includes('registered')`, row2))
	b.do(ctx, "approve from the row", chromedp.Click(chromedp.CSS(row2+" button")),
		chromedp.SendKeys(chromedp.ID("approve-comment"), "canary looked fine"),
		chromedp.Click(chromedp.CSS(`form[aria-label^="Approve"] button`)))
	b.wait(ctx, "the version approved on the page", fmt.Sprintf(`document.querySelector(%q)?.textContent.includes('canary looked fine')`, row2))
	var mv2 struct {
		Status    string `json:"status"`
		Approvals []struct {
			Comment string `json:"comment"`
		} `json:"approvals"`
	}
	h.call(http.MethodGet, fmt.Sprintf("/api/v1/models/%s/versions/%d", f.Model, v2.Version), nil, http.StatusOK, &mv2)
	if mv2.Status != "approved" || len(mv2.Approvals) != 1 || mv2.Approvals[0].Comment != "canary looked fine" {
		t.Errorf("after approving on the page the API has %+v", mv2)
	}

	// Lineage: the model's graph; selecting the dataset re-centres on it.
	b.open(ctx, fmt.Sprintf("#/lineage?node=model:%s@%d", f.Model, f.Version), "lineage")
	b.wait(ctx, "lineage nodes", `document.querySelectorAll('#lineage-graph g.node').length >= 3`)
	b.screenshot(ctx, "lineage")
	b.do(ctx, "click the dataset node", chromedp.Click(chromedp.CSS(`#lineage-graph g.node[data-node="dataset:temps@1"]`)))
	b.wait(ctx, "graph centred on the dataset", `document.querySelector('#lineage-graph g.focus')?.dataset.node === 'dataset:temps@1'`)

	// Rollouts: the state and wave on the page are the API's; pause from the page.
	b.open(ctx, "#/rollouts", "rollouts")
	var ro struct {
		State string `json:"state"`
		Wave  int    `json:"wave"`
	}
	h.call(http.MethodGet, "/api/v1/rollouts/"+f.RolloutID, nil, http.StatusOK, &ro)
	card := fmt.Sprintf(`[data-rollout=%q]`, f.RolloutID)
	b.wait(ctx, "rollout state as in the API", fmt.Sprintf(`document.querySelector('%s .rollout-state')?.dataset.state === %q`, card, ro.State))
	if ro.State != "running" {
		t.Fatalf("seeded rollout is %s, want running", ro.State)
	}
	b.wait(ctx, "rollout wave as in the API", fmt.Sprintf(`document.querySelector('%s .rollout-wave')?.textContent.startsWith('%d of 2')`, card, ro.Wave))
	for _, gate := range []string{"max_failure_rate", "max_drift_share", "max_invalid_rate"} {
		if got := text(b, ctx, fmt.Sprintf(`%s tr[data-gate=%q]`, card, gate)); !strings.Contains(got, "≤ 0.") {
			t.Errorf("gate %s row %q lacks its threshold", gate, got)
		}
	}
	b.screenshot(ctx, "rollouts")
	b.do(ctx, "click pause", chromedp.Click(chromedp.CSS(card+` button[data-action="pause"]`)))
	b.wait(ctx, "paused on the page", fmt.Sprintf(`document.querySelector('%s .rollout-state')?.dataset.state === 'paused'`, card))
	h.call(http.MethodGet, "/api/v1/rollouts/"+f.RolloutID, nil, http.StatusOK, &ro)
	if ro.State != "paused" {
		t.Errorf("API says the rollout is %s after pause on the page", ro.State)
	}
	b.wait(ctx, "resume offered", fmt.Sprintf(`!!document.querySelector('%s button[data-action="resume"]')`, card))
	b.screenshot(ctx, "rollouts-paused")

	// Drift: the fleet card of the version the devices run (fleet drift data, or a plain "no
	// fleet drift data yet"), and each reporting device's health.
	b.open(ctx, "#/drift", "drift")
	b.wait(ctx, "fleet drift card", fmt.Sprintf(`document.querySelector('[data-drift="%s@%d"]')`, f.Model, f.Version))
	if got := text(b, ctx, "#page"); !strings.Contains(got, f.Devices[0]) || !strings.Contains(got, f.Devices[1]) {
		t.Errorf("drift page lacks the reporting devices: %.500s", got)
	}
	b.screenshot(ctx, "drift")

	// Audit: the chain verifies in the browser, and the SHA-256 fallback agrees with WebCrypto.
	b.open(ctx, "#/audit", "audit")
	if ok := eval[string](b, ctx, `document.querySelector('#audit-verified').dataset.ok`); ok != "true" {
		t.Errorf("audit chain not verified in the browser: %s", text(b, ctx, "#audit-verified"))
	}
	b.screenshot(ctx, "audit")
	b.open(ctx, "#/audit?actor=admin", "audit")
	if ok := eval[string](b, ctx, `document.querySelector('#audit-verified').dataset.ok`); ok != "true" {
		t.Errorf("filtered audit chain not verified: %s", text(b, ctx, "#audit-verified"))
	}
	same := eval[bool](b, ctx, `(async () => {
		const { sha256hex } = await import('/ui/js/sha256.js');
		for (const s of ['', 'abc', 'x'.repeat(55), 'y'.repeat(64), 'ünïcödé €', 'z'.repeat(1000)]) {
			const bytes = new TextEncoder().encode(s);
			const d = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
			const want = [...d].map((x) => x.toString(16).padStart(2, '0')).join('');
			if (sha256hex(bytes) !== want) return false;
		}
		return true;
	})()`)
	if !same {
		t.Error("the SHA-256 fallback disagrees with crypto.subtle")
	}

	// Cluster: the leader is this node.
	b.open(ctx, "#/cluster", "cluster")
	if got := text(b, ctx, "#cluster-leader"); got != h.node.ID() {
		t.Errorf("cluster leader %q, want %s", got, h.node.ID())
	}
	b.screenshot(ctx, "cluster")

	// Phone: no page scrolls sideways at 390 px.
	b.do(ctx, "phone viewport", chromedp.EmulateViewport(390, 844))
	for _, p := range []struct{ hash, page string }{{"#/fleet", "fleet"}, {"#/rollouts", "rollouts"}, {"#/registry", "registry"}, {"#/audit", "audit"}} {
		b.open(ctx, p.hash, p.page)
		if w := eval[bool](b, ctx, `document.documentElement.scrollWidth <= window.innerWidth + 1`); !w {
			t.Errorf("%s scrolls sideways on a phone", p.hash)
		}
		// Nor does any cell or table spill out of its box.
		if over := eval[[]string](b, ctx, `[...document.querySelectorAll('#page td, #page .tablewrap')]
			.filter((e) => e.scrollWidth > e.clientWidth + 1).map((e) => e.textContent.slice(0, 60))`); len(over) > 0 {
			t.Errorf("%s on a phone: content wider than its box: %q", p.hash, over)
		}
		b.screenshot(ctx, "phone-"+p.page)
	}

	// Roles: each token's role is inferred without writes; a viewer sees no rollout actions.
	for _, role := range []string{"viewer", "approver", "publisher"} {
		var tok struct {
			Token string `json:"token"`
		}
		h.call(http.MethodPost, "/api/v1/tokens", map[string]string{"name": role + "-1", "role": role}, http.StatusCreated, &tok)
		tab, cancel := chromedp.NewContext(ctx)
		b.listen(tab)
		b.login(tab, h.URL, tok.Token)
		if got := text(b, tab, "#role"); got != role {
			t.Errorf("role badge %q, want %s", got, role)
		}
		b.open(tab, "#/rollouts", "rollouts")
		buttons := eval[int](b, tab, `document.querySelectorAll('#page button[data-action]').length`)
		if (role == "approver") != (buttons > 0) {
			t.Errorf("%s sees %d rollout action buttons", role, buttons)
		}
		cancel()
	}

	// Abort asks for a second click; a finished rollout reads its device list only when opened.
	b.do(ctx, "laptop viewport", chromedp.EmulateViewport(1366, 900))
	b.open(ctx, "#/rollouts", "rollouts")
	b.do(ctx, "click abort once", chromedp.Click(chromedp.CSS(card+` button[data-action="abort"]`)))
	b.wait(ctx, "abort asks to confirm", fmt.Sprintf(`document.querySelector('%s button[data-action="abort"]').textContent === 'Confirm abort'`, card))
	h.call(http.MethodGet, "/api/v1/rollouts/"+f.RolloutID, nil, http.StatusOK, &ro)
	if ro.State != "paused" {
		t.Fatalf("one click on abort changed the rollout to %s", ro.State)
	}
	b.do(ctx, "confirm abort", chromedp.Click(chromedp.CSS(card+` button[data-action="abort"]`)))
	b.wait(ctx, "aborted on the page", fmt.Sprintf(`document.querySelector('%s .rollout-state')?.dataset.state === 'aborted'`, card))
	h.call(http.MethodGet, "/api/v1/rollouts/"+f.RolloutID, nil, http.StatusOK, &ro)
	if ro.State != "aborted" {
		t.Errorf("API says %s after abort on the page", ro.State)
	}
	var rdevs struct {
		Items []json.RawMessage `json:"items"`
	}
	h.call(http.MethodGet, "/api/v1/rollouts/"+f.RolloutID+"/devices", nil, http.StatusOK, &rdevs)
	b.do(ctx, "open the device list", chromedp.Click(chromedp.CSS(card+` details summary`)))
	b.wait(ctx, "device rows of the finished rollout", fmt.Sprintf(`document.querySelectorAll('%s details tbody tr').length === %d`, card, len(rdevs.Items)))

	if p := b.problems(); len(p) > 0 {
		t.Errorf("browser console:\n%s", strings.Join(p, "\n"))
	}
}
