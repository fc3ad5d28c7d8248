package dashboard_test

import (
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"path"
	"regexp"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/driftline/driftline/hub/api"
	"github.com/driftline/driftline/hub/dashboard"
)

func TestHandler(t *testing.T) {
	e := echo.New()
	dashboard.Register(e)
	srv := httptest.NewServer(e)
	defer srv.Close()
	cases := []struct {
		method, path string
		status       int
		ctype        string // prefix of Content-Type
		body         string // substring of the body
	}{
		{"GET", "/", 200, "text/html", `name="driftline-dashboard"`},
		{"HEAD", "/", 200, "text/html", ""},
		{"GET", "/ui/app.css", 200, "text/css", "--accent"},
		{"GET", "/ui/js/app.js", 200, "text/javascript", "POLL_MS"},
		{"GET", "/ui/js/pages/rollouts.js", 200, "text/javascript", "/api/v1/rollouts"},
		{"GET", "/ui/favicon.svg", 200, "image/svg+xml", "<svg"},
		{"GET", "/ui/", 404, "", ""},
		{"GET", "/ui/js/", 404, "", ""},
		{"GET", "/ui/nope.js", 404, "", ""},
		{"GET", "/ui/../dashboard.go", 404, "", ""},
		{"GET", "/ui/index.html", 301, "", ""}, // http.FileServer sends */index.html to its directory
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, c := range cases {
		t.Run(c.method+c.path, func(t *testing.T) {
			req, _ := http.NewRequest(c.method, srv.URL+c.path, nil)
			res, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			b, _ := io.ReadAll(res.Body)
			if res.StatusCode != c.status {
				t.Fatalf("status %d, want %d: %.200s", res.StatusCode, c.status, b)
			}
			if c.status != 200 {
				return
			}
			if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, c.ctype) {
				t.Errorf("Content-Type %q, want %s", ct, c.ctype)
			}
			if res.Header.Get("Content-Security-Policy") != dashboard.ContentSecurityPolicy {
				t.Errorf("missing CSP: %q", res.Header.Get("Content-Security-Policy"))
			}
			if res.Header.Get("X-Content-Type-Options") != "nosniff" {
				t.Error("missing nosniff")
			}
			if !strings.Contains(string(b), c.body) {
				t.Errorf("body lacks %q", c.body)
			}
		})
	}
}

func TestHandlerRefusesWrites(t *testing.T) {
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete} {
		rec := httptest.NewRecorder()
		dashboard.Handler().ServeHTTP(rec, httptest.NewRequest(m, "/", nil))
		if rec.Code != http.StatusMethodNotAllowed {
			t.Errorf("%s /: %d, want 405", m, rec.Code)
		}
	}
}

var (
	importRE = regexp.MustCompile(`(?m)^\s*import\s+(?:[^'"]*?\s+from\s+)?['"]([^'"]+)['"]`)
	refRE    = regexp.MustCompile(`(?:src|href)="(/ui/[^"]+)"`)
)

// TestAssetReferences checks that every module import and every asset index.html names is
// embedded, so a renamed file fails here rather than in a browser.
func TestAssetReferences(t *testing.T) {
	assets := dashboard.Assets()
	exists := func(p string) bool {
		_, err := fs.Stat(assets, p)
		return err == nil
	}
	html, err := fs.ReadFile(assets, "index.html")
	if err != nil {
		t.Fatal(err)
	}
	refs := refRE.FindAllStringSubmatch(string(html), -1)
	if len(refs) < 3 {
		t.Fatalf("index.html names %d assets, want the stylesheet, icon and app module", len(refs))
	}
	for _, m := range refs {
		if p := strings.TrimPrefix(m[1], dashboard.AssetPrefix); !exists(p) {
			t.Errorf("index.html names %s, which is not embedded", m[1])
		}
	}
	modules := 0
	err = fs.WalkDir(assets, "js", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".js") {
			return err
		}
		modules++
		src, err := fs.ReadFile(assets, p)
		if err != nil {
			return err
		}
		for _, m := range importRE.FindAllStringSubmatch(string(src), -1) {
			if !strings.HasPrefix(m[1], ".") {
				t.Errorf("%s imports %q: only relative module paths work without a bundler", p, m[1])
				continue
			}
			if target := path.Join(path.Dir(p), m[1]); !exists(target) {
				t.Errorf("%s imports %s, which is not embedded", p, target)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if modules < 10 {
		t.Fatalf("walked %d modules; the pages are missing", modules)
	}
}

// TestExtraOnAPIServer mounts the dashboard the way a hub node does (api.Config.Extra) and
// checks that it answers beside the API without taking any of its routes.
func TestExtraOnAPIServer(t *testing.T) {
	s := api.New(api.Config{Extra: dashboard.Extra})
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	for _, c := range []struct {
		path   string
		status int
		ctype  string
	}{
		{"/", 200, "text/html"},
		{"/ui/js/app.js", 200, "text/javascript"},
		{"/api/v1/cluster", 401, "application/problem+json"},
		{"/nope", 404, "application/problem+json"},
	} {
		res, err := http.Get(srv.URL + c.path)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != c.status || !strings.HasPrefix(res.Header.Get("Content-Type"), c.ctype) {
			t.Errorf("GET %s: %d %s, want %d %s", c.path, res.StatusCode, res.Header.Get("Content-Type"), c.status, c.ctype)
		}
	}
}
