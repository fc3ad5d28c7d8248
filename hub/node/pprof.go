package node

import (
	"net/http"
	"net/http/pprof"

	"github.com/labstack/echo/v4"
)

// registerPprof serves Go's profiles under /debug/pprof/ behind mw (an admin token): a profile
// shows memory contents and a CPU profile costs the node CPU, so they are no one else's. The
// handlers are registered one by one, not through http.DefaultServeMux, which serves whatever
// any imported package registered on it.
func registerPprof(e *echo.Echo, mw ...echo.MiddlewareFunc) {
	g := e.Group("/debug/pprof", mw...)
	g.GET("/cmdline", echo.WrapHandler(http.HandlerFunc(pprof.Cmdline)))
	g.GET("/profile", echo.WrapHandler(http.HandlerFunc(pprof.Profile)))
	g.GET("/symbol", echo.WrapHandler(http.HandlerFunc(pprof.Symbol)))
	g.POST("/symbol", echo.WrapHandler(http.HandlerFunc(pprof.Symbol)))
	g.GET("/trace", echo.WrapHandler(http.HandlerFunc(pprof.Trace)))
	g.GET("/*", echo.WrapHandler(http.HandlerFunc(pprof.Index))) // the index and named profiles (heap, goroutine, ...)
}
