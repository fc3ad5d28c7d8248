package api

import (
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
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
		scheme := s.cfg.PeerScheme
		if scheme == "" {
			scheme = "http"
			if c.Request().TLS != nil {
				scheme = "https"
			}
		}
		c.Request().Header.Set(forwardedHeader, "1")
		s.proxyTo(scheme, addr).ServeHTTP(c.Response(), c.Request())
		return nil
	}
}

// proxyTo returns the reverse proxy to the leader at scheme://addr, built once per address: a
// proxy per request, and a fresh 32 KiB copy buffer per response, were a measurable part of
// every forwarded write.
func (s *Server) proxyTo(scheme, addr string) *httputil.ReverseProxy {
	key := scheme + "://" + addr
	if p, ok := s.proxies.Load(key); ok {
		return p.(*httputil.ReverseProxy)
	}
	proxy := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: scheme, Host: addr})
	proxy.Transport = forwardTransport
	if s.cfg.PeerTransport != nil {
		proxy.Transport = s.cfg.PeerTransport
	}
	proxy.BufferPool = forwardBuffers
	proxy.ErrorHandler = func(w http.ResponseWriter, r *http.Request, err error) {
		s.log.Warn("forward to leader failed", "leader", addr, "err", err)
		w.Header().Set("Content-Type", "application/problem+json")
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusServiceUnavailable)
		_ = jsonEncode(w, Problem{Type: ProblemNoLeader, Title: "no leader", Status: 503,
			Detail: "the leader at " + addr + " did not answer: " + err.Error()})
	}
	p, _ := s.proxies.LoadOrStore(key, proxy)
	return p.(*httputil.ReverseProxy)
}

// forwardBuffers recycles the reverse proxy's copy buffers.
var forwardBuffers = &bufferPool{p: sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}}

// bufferPool is an httputil.BufferPool over a sync.Pool.
type bufferPool struct{ p sync.Pool }

func (b *bufferPool) Get() []byte  { return *(b.p.Get().(*[]byte)) }
func (b *bufferPool) Put(v []byte) { b.p.Put(&v) }

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
