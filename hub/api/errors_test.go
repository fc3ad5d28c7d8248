package api_test

import (
	"bytes"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/driftline/driftline/hub/api"
	"github.com/driftline/driftline/hub/node"
	"github.com/driftline/driftline/hub/state"
)

// wantProblem checks that r is a problem+json answer with the status, a stable type URI and,
// when field is not empty, the field at fault.
func wantProblem(t testing.TB, r response, status int, field string) api.Problem {
	t.Helper()
	if r.code != status {
		t.Errorf("status = %d, want %d: %s", r.code, status, r.body)
		return api.Problem{}
	}
	if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("Content-Type = %q, want application/problem+json", ct)
	}
	p := r.problem(t)
	if !strings.HasPrefix(p.Type, api.ProblemBase) || len(p.Type) == len(api.ProblemBase) {
		t.Errorf("problem type %q does not start with %s", p.Type, api.ProblemBase)
	}
	if p.Status != status || p.Title == "" {
		t.Errorf("problem = %+v, want status %d and a title", p, status)
	}
	if field != "" && p.Field != field {
		t.Errorf("problem field = %q, want %q (%s)", p.Field, field, p.Detail)
	}
	return p
}

// walkPages follows next_cursor from the first page of path with the given limit and returns
// every item, failing on a page larger than the limit.
func walkPages[T any](t testing.TB, h *testHub, path string, limit int) []T {
	t.Helper()
	var all []T
	cursor := ""
	for pages := 0; ; pages++ {
		if pages > 1000 {
			t.Fatalf("%s: more than 1000 pages", path)
		}
		q := url.Values{"limit": {strconv.Itoa(limit)}}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		sep := "?"
		if strings.Contains(path, "?") {
			sep = "&"
		}
		var p state.Page[T]
		h.must(http.StatusOK, "GET", path+sep+q.Encode(), h.admin, nil, &p)
		if len(p.Items) > limit {
			t.Fatalf("%s: page of %d items with limit %d", path, len(p.Items), limit)
		}
		all = append(all, p.Items...)
		if p.NextCursor == nil {
			return all
		}
		if *p.NextCursor == cursor || *p.NextCursor == "" {
			t.Fatalf("%s: next_cursor %q does not advance", path, *p.NextCursor)
		}
		cursor = *p.NextCursor
	}
}

// TestBadRequests checks that each kind of bad input is a 400 naming the field at fault.
func TestBadRequests(t *testing.T) {
	h := startHub(t, nil)
	h.pushDataset("temps", "")
	h.pushModel("m", h.admin, []byte("model"), "")
	h.must(http.StatusCreated, "POST", "/api/v1/devices", h.admin, api.DeviceRequest{ID: "dev-1"}, nil)

	cases := []struct {
		name, method, path string
		body               any
		field              string
	}{
		{"malformed JSON", "POST", "/api/v1/datasets", `{"name":`, ""},
		{"trailing data", "POST", "/api/v1/datasets", `{"name":"a"} {}`, ""},
		{"empty body", "POST", "/api/v1/datasets", ``, ""},
		{"unknown field", "POST", "/api/v1/datasets", `{"name":"a","colour":"red"}`, "colour"},
		{"wrong type", "POST", "/api/v1/models", `{"name":5}`, "name"},
		{"bad dataset name", "POST", "/api/v1/datasets", `{"name":"bad name!"}`, "name"},
		{"empty model name", "POST", "/api/v1/models", `{"name":""}`, "name"},
		{"version not a number", "GET", "/api/v1/datasets/temps/versions/abc", nil, "v"},
		{"version zero", "GET", "/api/v1/models/m/versions/0", nil, "v"},
		{"limit zero", "GET", "/api/v1/datasets?limit=0", nil, "limit"},
		{"limit too big", "GET", "/api/v1/models?limit=5000", nil, "limit"},
		{"bad consistency", "GET", "/api/v1/datasets?consistency=eventual", nil, "consistency"},
		{"token role unknown", "POST", "/api/v1/tokens", `{"name":"t","role":"root"}`, "role"},
		{"token role device", "POST", "/api/v1/tokens", `{"name":"t","role":"device"}`, "role"},
		{"token name bad", "POST", "/api/v1/tokens", `{"name":"a b","role":"viewer"}`, "name"},
		{"device id bad", "POST", "/api/v1/devices", `{"id":"dev/1"}`, "id"},
		{"device label key bad", "POST", "/api/v1/devices", `{"id":"dev-9","labels":{"a b":"c"}}`, "labels.a b"},
		{"device labels wrong type", "POST", "/api/v1/devices", `{"id":"dev-9","labels":["a"]}`, "labels"},
		{"patch label key bad", "PATCH", "/api/v1/devices/dev-1", `{"labels":{"":"c"}}`, "labels."},
		{"alias without version", "PUT", "/api/v1/models/m/aliases/prod", `{}`, "version"},
		{"alias negative version", "PUT", "/api/v1/models/m/aliases/prod", `{"version":-1}`, "version"},
		{"alias version as string", "PUT", "/api/v1/models/m/aliases/prod", `{"version":"1"}`, "version"},
		{"desired without version", "PUT", "/api/v1/devices/dev-1/models/m", `{}`, "version"},
		{"approve unknown field", "POST", "/api/v1/models/m/versions/1/approve", `{"note":"x"}`, "note"},
		{"lineage bad node", "GET", "/api/v1/lineage?node=table:x", nil, "node"},
		{"lineage bad depth", "GET", "/api/v1/lineage?node=dataset:temps@1&depth=0", nil, "depth"},
		{"audit bad since", "GET", "/api/v1/audit?since=yesterday", nil, "since"},
		{"join without id", "POST", "/api/v1/cluster/join", `{"raft":"127.0.0.1:1","http":"127.0.0.1:2"}`, "id"},
		{"join without raft", "POST", "/api/v1/cluster/join", `{"id":"n2","http":"127.0.0.1:2"}`, "raft"},
		{"join without http", "POST", "/api/v1/cluster/join", `{"id":"n2","raft":"127.0.0.1:1"}`, "http"},
		{"bad cursor", "GET", "/api/v1/datasets?cursor=not-a-cursor", nil, ""},
		{"cursor of another list", "GET", "/api/v1/models?cursor=" + datasetCursor(t, h), nil, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			wantProblem(t, h.do(c.method, c.path, h.admin, c.body), http.StatusBadRequest, c.field)
		})
	}

	uploads := []struct {
		name  string
		path  string
		parts []part
		field string
	}{
		{"model without artifact", "/api/v1/models/m/versions", []part{{name: "metadata", data: strings.NewReader(`{}`)}}, "artifact"},
		{"model unknown part", "/api/v1/models/m/versions", []part{{name: "weights", data: strings.NewReader(`x`)}}, "weights"},
		{"model metadata malformed", "/api/v1/models/m/versions", []part{{name: "metadata", data: strings.NewReader(`{"format":`)}}, "metadata"},
		{"model metadata unknown field", "/api/v1/models/m/versions", []part{{name: "metadata", data: strings.NewReader(`{"owner":"x"}`)}}, "metadata"},
		{"model trained_on without version", "/api/v1/models/m/versions", []part{
			{name: "metadata", data: strings.NewReader(`{"trained_on":[{"dataset":"temps"}]}`)},
			{name: "artifact", filename: "a", data: strings.NewReader("abc")}}, "trained_on[0]"},
		{"dataset without contract", "/api/v1/datasets/temps/versions", []part{{name: "sample", filename: "s.csv", data: strings.NewReader("a\n1\n")}}, "contract"},
		{"dataset without sample", "/api/v1/datasets/temps/versions", []part{{name: "contract", data: strings.NewReader(testContract)}}, "sample"},
		{"dataset contract not JSON", "/api/v1/datasets/temps/versions", []part{
			{name: "contract", data: strings.NewReader(`fields: []`)},
			{name: "sample", filename: "s.csv", data: strings.NewReader("a\n1\n")}}, ""},
		{"dataset parents malformed", "/api/v1/datasets/temps/versions", []part{{name: "parents", data: strings.NewReader(`{"dataset":"temps"}`)}}, "parents"},
		{"dataset unknown part", "/api/v1/datasets/temps/versions", []part{{name: "readme", data: strings.NewReader(`x`)}}, "readme"},
	}
	for _, c := range uploads {
		t.Run(c.name, func(t *testing.T) {
			wantProblem(t, h.upload(c.path, h.admin, c.parts...), http.StatusBadRequest, c.field)
		})
	}

	t.Run("trained_on names a missing dataset version", func(t *testing.T) {
		r := h.upload("/api/v1/models/m/versions", h.admin,
			part{name: "metadata", data: strings.NewReader(`{"trained_on":[{"dataset":"temps","version":9}]}`)},
			part{name: "artifact", filename: "a", data: strings.NewReader("abc")})
		p := wantProblem(t, r, http.StatusBadRequest, "")
		if !strings.Contains(p.Detail, "trained_on") || !strings.Contains(p.Detail, "temps@9") {
			t.Errorf("detail %q does not name trained_on and dataset:temps@9", p.Detail)
		}
	})

	t.Run("JSON with another content type", func(t *testing.T) {
		r := h.raw("POST", "/api/v1/datasets", h.admin, "text/plain", strings.NewReader(`{"name":"x"}`))
		wantProblem(t, r, http.StatusUnsupportedMediaType, "")
	})
	t.Run("upload that is not multipart", func(t *testing.T) {
		wantProblem(t, h.do("POST", "/api/v1/models/m/versions", h.admin, `{}`), http.StatusUnsupportedMediaType, "")
	})
}

// datasetCursor returns a real next_cursor of the dataset list (two datasets, limit 1).
func datasetCursor(t *testing.T, h *testHub) string {
	t.Helper()
	h.must(http.StatusCreated, "POST", "/api/v1/datasets", h.admin, api.CreateRequest{Name: "cursor-a"}, nil)
	h.must(http.StatusCreated, "POST", "/api/v1/datasets", h.admin, api.CreateRequest{Name: "cursor-b"}, nil)
	var p state.Page[state.Dataset]
	h.must(http.StatusOK, "GET", "/api/v1/datasets?limit=1", h.admin, nil, &p)
	if p.NextCursor == nil {
		t.Fatal("no next_cursor with two datasets and limit 1")
	}
	return url.QueryEscape(*p.NextCursor)
}

// TestUnauthorizedAndNotFound covers 401 (missing, malformed, unknown and revoked tokens) and
// 404 on each kind of object.
func TestUnauthorizedAndNotFound(t *testing.T) {
	h := startHub(t, nil)
	var tc api.TokenCreated
	h.must(http.StatusCreated, "POST", "/api/v1/tokens", h.admin, api.TokenRequest{Name: "temp", Role: state.RoleViewer}, &tc)
	h.must(http.StatusOK, "GET", "/api/v1/datasets", tc.Token, nil, nil)
	h.must(http.StatusOK, "DELETE", "/api/v1/tokens/"+tc.ID, h.admin, nil, nil)

	unauth := []struct {
		name, header string
	}{
		{"no token", ""},
		{"basic auth", "Basic YWRtaW46YWRtaW4="},
		{"empty bearer", "Bearer "},
		{"unknown token", "Bearer dl_nope"},
		{"revoked token", "Bearer " + tc.Token},
	}
	for _, c := range unauth {
		t.Run(c.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", h.url+"/api/v1/datasets", nil)
			if c.header != "" {
				req.Header.Set("Authorization", c.header)
			}
			res, err := h.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			var b bytes.Buffer
			b.ReadFrom(res.Body)
			wantProblem(t, response{code: res.StatusCode, header: res.Header, body: b.Bytes()}, http.StatusUnauthorized, "")
		})
	}

	h.pushModel("m", h.admin, []byte("x"), "")
	notFound := []struct{ method, path string }{
		{"GET", "/api/v1/datasets/nope"},
		{"GET", "/api/v1/datasets/nope/versions"},
		{"GET", "/api/v1/datasets/nope/versions/1"},
		{"GET", "/api/v1/models/nope"},
		{"GET", "/api/v1/models/m/versions/2"},
		{"GET", "/api/v1/models/m/versions/2/artifact"},
		{"GET", "/api/v1/models/m/aliases/production"},
		{"PUT", "/api/v1/models/nope/aliases/production"},
		{"POST", "/api/v1/models/m/versions/2/approve"},
		{"POST", "/api/v1/models/m/versions/2/deprecate"},
		{"GET", "/api/v1/devices/nope"},
		{"PATCH", "/api/v1/devices/nope"},
		{"DELETE", "/api/v1/devices/nope"},
		{"DELETE", "/api/v1/tokens/nope"},
		{"GET", "/api/v1/no-such-route"},
	}
	bodies := map[string]any{"PUT": api.VersionRequest{Version: ptr(1)}, "PATCH": `{"labels":{"a":"b"}}`}
	for _, c := range notFound {
		t.Run(c.method+" "+c.path, func(t *testing.T) {
			wantProblem(t, h.do(c.method, c.path, h.admin, bodies[c.method]), http.StatusNotFound, "")
		})
	}
	t.Run("method not allowed", func(t *testing.T) {
		wantProblem(t, h.do("DELETE", "/api/v1/datasets", h.admin, nil), http.StatusMethodNotAllowed, "")
	})
}

// TestConflicts covers 409 on duplicates and a second approval by the same identity.
func TestConflicts(t *testing.T) {
	h := startHub(t, nil)
	h.must(http.StatusCreated, "POST", "/api/v1/datasets", h.admin, api.CreateRequest{Name: "d"}, nil)
	h.must(http.StatusCreated, "POST", "/api/v1/models", h.admin, api.CreateRequest{Name: "m"}, nil)
	h.must(http.StatusCreated, "POST", "/api/v1/devices", h.admin, api.DeviceRequest{ID: "dev"}, nil)
	appr := h.token("appr", state.RoleApprover)
	h.pushModel("m", h.admin, []byte("x"), "")
	h.must(http.StatusOK, "POST", "/api/v1/models/m/versions/1/approve", appr, nil, nil)
	cases := []struct {
		name, method, path, token string
		body                      any
		typ                       string
	}{
		{"duplicate dataset", "POST", "/api/v1/datasets", h.admin, api.CreateRequest{Name: "d"}, api.ProblemExists},
		{"duplicate model", "POST", "/api/v1/models", h.admin, api.CreateRequest{Name: "m"}, api.ProblemExists},
		{"duplicate device", "POST", "/api/v1/devices", h.admin, api.DeviceRequest{ID: "dev"}, api.ProblemExists},
		{"second approval by the same identity", "POST", "/api/v1/models/m/versions/1/approve", appr, nil, api.ProblemConflict},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := wantProblem(t, h.do(c.method, c.path, c.token, c.body), http.StatusConflict, "")
			if p.Status == http.StatusConflict && p.Type != c.typ {
				t.Errorf("type = %q, want %q", p.Type, c.typ)
			}
		})
	}
}

// TestFourEyes: with four-eyes on, the token that registered a version cannot approve it. The
// identity is the token (its id): names are not unique, so another token that happens to have
// the same name is another principal, and may approve.
func TestFourEyes(t *testing.T) {
	h := startHub(t, func(c *node.Config) { c.FourEyes = true })
	alice := h.token("alice", state.RolePublisher)
	otherAlice := h.token("alice", state.RoleApprover) // a second token with the same name
	bob := h.token("bob", state.RoleApprover)
	h.pushModel("m", alice, []byte("model"), "")
	h.pushModel("m", h.admin, []byte("model 2"), "")

	p := wantProblem(t, h.do("POST", "/api/v1/models/m/versions/2/approve", h.admin, nil), http.StatusConflict, "")
	if !strings.Contains(p.Detail, "four-eyes") {
		t.Errorf("detail %q does not say four-eyes", p.Detail)
	}
	var mv modelVersionOut
	h.must(http.StatusOK, "POST", "/api/v1/models/m/versions/1/approve", otherAlice, api.ApproveRequest{Comment: "ok"}, &mv)
	if mv.Status != state.StatusApproved {
		t.Errorf("status after the approval = %q", mv.Status)
	}
	// The same token cannot approve twice; bob still can.
	wantProblem(t, h.do("POST", "/api/v1/models/m/versions/1/approve", otherAlice, nil), http.StatusConflict, "")
	h.must(http.StatusOK, "POST", "/api/v1/models/m/versions/1/approve", bob, nil, nil)
	h.must(http.StatusOK, "POST", "/api/v1/models/m/versions/2/approve", bob, nil, nil)
}

// TestUploadLimit: uploads over node.Config.MaxUploadBytes are 413, and nothing is registered.
func TestUploadLimit(t *testing.T) {
	const limit = 64 << 10
	h := startHub(t, func(c *node.Config) { c.MaxUploadBytes = limit })
	h.must(http.StatusCreated, "POST", "/api/v1/models", h.admin, api.CreateRequest{Name: "m"}, nil)
	h.must(http.StatusCreated, "POST", "/api/v1/datasets", h.admin, api.CreateRequest{Name: "d"}, nil)

	big := bytes.Repeat([]byte("0123456789abcdef"), 4*limit/16)
	r := h.upload("/api/v1/models/m/versions", h.admin, part{name: "artifact", filename: "big.bin", data: bytes.NewReader(big)})
	wantProblem(t, r, http.StatusRequestEntityTooLarge, "")
	r = h.upload("/api/v1/datasets/d/versions", h.admin,
		part{name: "contract", data: strings.NewReader(testContract)},
		part{name: "sample", filename: "s.csv", data: bytes.NewReader(big)})
	wantProblem(t, r, http.StatusRequestEntityTooLarge, "")

	var m state.Model
	h.must(http.StatusOK, "GET", "/api/v1/models/m", h.admin, nil, &m)
	var d state.Dataset
	h.must(http.StatusOK, "GET", "/api/v1/datasets/d", h.admin, nil, &d)
	if m.LatestVersion != 0 || d.LatestVersion != 0 {
		t.Errorf("a refused upload registered a version: model %d, dataset %d", m.LatestVersion, d.LatestVersion)
	}
	// Under the limit the same route works.
	h.pushModel("m", h.admin, big[:limit/2], "")

	// JSON bodies have their own limit (4 MiB by default).
	huge := `{"name":"x","description":"` + strings.Repeat("a", 5<<20) + `"}`
	wantProblem(t, h.do("POST", "/api/v1/datasets", h.admin, huge), http.StatusRequestEntityTooLarge, "")
}

// TestPagination walks every list with a small limit: each item appears exactly once, in order.
func TestPagination(t *testing.T) {
	h := startHub(t, nil)
	var names []string
	for i := range 7 {
		n := "item-" + string(rune('a'+i))
		names = append(names, n)
		h.must(http.StatusCreated, "POST", "/api/v1/datasets", h.admin, api.CreateRequest{Name: n}, nil)
		h.must(http.StatusCreated, "POST", "/api/v1/models", h.admin, api.CreateRequest{Name: n}, nil)
		h.must(http.StatusCreated, "POST", "/api/v1/devices", h.admin, api.DeviceRequest{ID: n, Labels: map[string]string{"odd": strconv.Itoa(i % 2)}}, nil)
		h.token(n, state.RoleViewer)
	}
	for _, limit := range []int{1, 3, 7, 100} {
		t.Run("limit="+strconv.Itoa(limit), func(t *testing.T) {
			checkNames(t, "datasets", names, walkPages[state.Dataset](t, h, "/api/v1/datasets", limit), func(d state.Dataset) string { return d.Name })
			checkNames(t, "models", names, walkPages[state.Model](t, h, "/api/v1/models", limit), func(m state.Model) string { return m.Name })
			checkNames(t, "devices", names, walkPages[state.Device](t, h, "/api/v1/devices", limit), func(d state.Device) string { return d.ID })
			checkNames(t, "devices odd=1", []string{"item-b", "item-d", "item-f"},
				walkPages[state.Device](t, h, "/api/v1/devices?selector=odd%3D1", limit), func(d state.Device) string { return d.ID })
			toks := walkPages[state.Token](t, h, "/api/v1/tokens", limit)
			if len(toks) != 8 { // the admin token and 7 viewers
				t.Errorf("tokens: %d, want 8", len(toks))
			}
			seen := map[string]bool{}
			for _, tk := range toks {
				if seen[tk.ID] {
					t.Errorf("token %s listed twice", tk.ID)
				}
				seen[tk.ID] = true
			}
		})
	}
	r := h.must(http.StatusOK, "GET", "/api/v1/tokens", h.admin, nil, nil)
	if bytes.Contains(r.body, []byte(`"token"`)) || bytes.Contains(r.body, []byte(`"hash"`)) {
		t.Errorf("token list shows secrets: %s", r.body)
	}
	wantProblem(t, h.do("GET", "/api/v1/devices?cursor=%21%21", h.admin, nil), http.StatusBadRequest, "")
	wantProblem(t, h.do("GET", "/api/v1/audit?cursor=AAAA", h.admin, nil), http.StatusBadRequest, "")
}

func checkNames[T any](t *testing.T, what string, want []string, items []T, name func(T) string) {
	t.Helper()
	var got []string
	for _, it := range items {
		got = append(got, name(it))
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("%s: walked %v, want %v", what, got, want)
	}
}

// TestProblemShape: every error answer, whatever produced it (auth middleware, router, decoder,
// state machine), is application/problem+json with a type under https://driftline.dev/problems/.
func TestProblemShape(t *testing.T) {
	h := startHub(t, nil)
	viewer := h.token("v", state.RoleViewer)
	cases := []struct {
		name, method, path, token string
		body                      any
		status                    int
		typ                       string
	}{
		{"bad input", "POST", "/api/v1/datasets", h.admin, `{`, 400, api.ProblemInvalid},
		{"no token", "GET", "/api/v1/datasets", "", nil, 401, api.ProblemUnauthorized},
		{"wrong role", "POST", "/api/v1/datasets", viewer, `{"name":"x"}`, 403, api.ProblemForbidden},
		{"missing object", "GET", "/api/v1/models/none", h.admin, nil, 404, api.ProblemNotFound},
		{"unknown route", "GET", "/nowhere", "", nil, 404, api.ProblemNotFound},
		{"wrong method", "PUT", "/api/v1/keys", h.admin, nil, 405, api.ProblemMethod},
		{"media type", "POST", "/api/v1/models/none/versions", h.admin, `{}`, 404, api.ProblemNotFound},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := wantProblem(t, h.do(c.method, c.path, c.token, c.body), c.status, "")
			if p.Type != c.typ {
				t.Errorf("type = %q, want %q", p.Type, c.typ)
			}
			if p.Instance == "" {
				t.Errorf("problem has no instance: %+v", p)
			}
		})
	}
}
