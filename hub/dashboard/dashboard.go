// Package dashboard serves the hub's web dashboard: static HTML, CSS and JavaScript modules
// embedded in the binary with go:embed, so that a hub needs no build step and no files beside
// it at run time. The pages are plain ES modules that read the hub's own HTTP API with the
// operator's bearer token; this package adds no API of its own.
package dashboard

import (
	"embed"
	"io/fs"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/driftline/driftline/hub/api"
)

// Paths the dashboard is served at.
const (
	// IndexPath is the dashboard's single page.
	IndexPath = "/"
	// AssetPrefix is where the embedded scripts and styles live (AssetPrefix + "js/app.js").
	AssetPrefix = "/ui/"
)

// ContentSecurityPolicy is sent with every dashboard response: scripts, styles and API calls
// come from the hub itself only, and the page may not be framed.
const ContentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

//go:embed assets
var embedded embed.FS

// Assets returns the embedded files, rooted at the asset directory (index.html, app.css,
// js/...). Tests and tools read them from here.
func Assets() fs.FS {
	sub, err := fs.Sub(embedded, "assets")
	if err != nil { // the directory is compiled in: this cannot fail
		panic("dashboard: embedded assets missing: " + err.Error())
	}
	return sub
}

// Handler serves the dashboard: IndexPath answers index.html and AssetPrefix the embedded
// assets. Any other path is 404. Responses carry ContentSecurityPolicy and no-cache (the files
// are small and change with the binary).
func Handler() http.Handler {
	assets := Assets()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", ContentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-cache")
		switch {
		case r.Method != http.MethodGet && r.Method != http.MethodHead:
			h.Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		case r.URL.Path == IndexPath:
			http.ServeFileFS(w, r, assets, "index.html")
		default:
			name, ok := assetName(assets, r.URL.Path)
			if !ok {
				http.NotFound(w, r)
				return
			}
			http.ServeFileFS(w, r, assets, name)
		}
	})
}

// assetName maps a request path under AssetPrefix to an embedded file. Directories, paths
// that are not valid io/fs names (.., invalid UTF-8) and missing files are not assets.
func assetName(assets fs.FS, urlPath string) (string, bool) {
	name, ok := strings.CutPrefix(urlPath, AssetPrefix)
	if !ok || !fs.ValidPath(name) {
		return "", false
	}
	st, err := fs.Stat(assets, name)
	if err != nil || st.IsDir() {
		return "", false
	}
	return name, true
}

// Register adds the dashboard's routes to e: GET (and HEAD) IndexPath and AssetPrefix + "*".
// It registers nothing under /api, so it never shadows an API route.
func Register(e *echo.Echo) {
	h := echo.WrapHandler(Handler())
	for _, p := range []string{IndexPath, AssetPrefix + "*"} {
		e.GET(p, h)
		e.HEAD(p, h)
	}
}

// Extra has the shape of api.Config.Extra: a hub node serves the dashboard beside its API with
// api.Config{..., Extra: dashboard.Extra}.
func Extra(e *echo.Echo, _ *api.Server) { Register(e) }
