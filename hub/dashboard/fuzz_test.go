package dashboard_test

import (
	"io/fs"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/driftline/driftline/hub/dashboard"
)

// FuzzHandler sends arbitrary methods and paths: the handler never panics or fails with 5xx,
// and it answers 200 only for the index and for files that are embedded.
func FuzzHandler(f *testing.F) {
	for _, s := range []string{"/", "/ui/app.css", "/ui/js/app.js", "/ui/", "/ui/../../etc/passwd", "/ui/js/../index.html",
		"/ui/%2e%2e/dashboard.go", "//ui//app.css", "/api/v1/devices", "/ui/js", "/ui/\x00", "/ui/js/pages/fleet.js?x=1"} {
		f.Add("GET", s)
	}
	f.Add("POST", "/")
	f.Add("HEAD", "/ui/app.css")
	e := echo.New()
	dashboard.Register(e)
	assets := dashboard.Assets()
	f.Fuzz(func(t *testing.T, method, target string) {
		if !strings.HasPrefix(target, "/") || strings.ContainsAny(method, " \t\r\n") || method == "" {
			return
		}
		req, err := http.NewRequest(method, "http://hub"+target, nil)
		if err != nil {
			return // not a request a client could send
		}
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%s %q: %d", method, target, rec.Code)
		}
		if rec.Code != http.StatusOK {
			return
		}
		p := req.URL.Path
		if p == dashboard.IndexPath {
			return
		}
		name, ok := strings.CutPrefix(p, dashboard.AssetPrefix)
		if !ok {
			t.Fatalf("%s %q: 200 outside the dashboard's paths", method, target)
		}
		if _, err := fs.Stat(assets, name); err != nil && !strings.Contains(name, "..") && !strings.Contains(name, "//") {
			t.Fatalf("%s %q: 200 for %s, which is not embedded", method, target, name)
		}
	})
}
