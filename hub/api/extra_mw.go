package api

import "github.com/labstack/echo/v4"

// ReadMiddleware is what a read route registered through Config.Extra puts in front of its
// handler: the bearer token must belong to admin, viewer, publisher or approver.
func (s *Server) ReadMiddleware() []echo.MiddlewareFunc {
	return []echo.MiddlewareFunc{s.allow(readers...), s.strongRead}
}

// AdminMiddleware admits an admin token only, for routes that Extra registers (profiling).
func (s *Server) AdminMiddleware() []echo.MiddlewareFunc {
	return []echo.MiddlewareFunc{s.allow(adminOnly...)}
}
