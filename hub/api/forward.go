package api

import (
	"net/http"
	"net/http/httputil"
	"net/url"
	"time"

	"github.com/labstack/echo/v4"
)

// forwardTransport keeps connections to the leader open across forwarded requests (the default
// transport keeps only two idle connections per host, so concurrent writes through a follower
// would dial the leader for nearly every request).
var forwardTransport = &http.Transport{
	Proxy:               nil,
	MaxIdleConns:        256,
	MaxIdleConnsPerHost: 256,
	IdleConnTimeout:     90 * time.Second,
	ForceAttemptHTTP2:   false,
}

// forwardedHeader marks a request a follower proxied to the leader; a node that receives one
// and is not the leader answers 503 instead of forwarding again (no loops during elections).
const forwardedHeader = "X-Driftline-Forwarded"

// leaderOnly runs writes (and strong reads) on the leader: on a follower it proxies the request,
// body streamed, to the leader's HTTP address; with no leader known it answers 503 with
// Retry-After.
func (s *Server) leaderOnly(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if s.store.IsLeader() {
			return next(c)
		}
		if c.Request().Header.Get(forwardedHeader) != "" {
			return noLeader("this node was told it is the leader but is not; retry")
		}
		_, addr, ok := s.store.LeaderHTTP()
		if !ok || addr == "" {
			return noLeader("no leader is known; the cluster is electing one")
		}
		target := &url.URL{Scheme: "http", Host: addr}
		if c.Request().TLS != nil {
			target.Scheme = "https"
		}
		proxy := httputil.NewSingleHostReverseProxy(target)
		proxy.Transport = forwardTransport
		proxy.ErrorHandler = func(w http.ResponseWriter, r *http.Request, err error) {
			s.log.Warn("forward to leader failed", "leader", addr, "err", err)
			w.Header().Set("Content-Type", "application/problem+json")
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusServiceUnavailable)
			_ = jsonEncode(w, Problem{Type: ProblemNoLeader, Title: "no leader", Status: 503,
				Detail: "the leader at " + addr + " did not answer: " + err.Error()})
		}
		c.Request().Header.Set(forwardedHeader, "1")
		proxy.ServeHTTP(c.Response(), c.Request())
		return nil
	}
}

// strongRead forwards `?consistency=strong` reads to the leader and runs a barrier there, so the
// read sees every write acknowledged before it began.
func (s *Server) strongRead(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		switch c.QueryParam("consistency") {
		case "", "default", "local":
			return next(c)
		case "strong":
		default:
			return badRequest("consistency", "consistency must be strong or local")
		}
		return s.leaderOnly(func(c echo.Context) error {
			if err := s.store.Barrier(c.Request().Context()); err != nil {
				return err
			}
			return next(c)
		})(c)
	}
}
