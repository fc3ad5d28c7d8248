package cluster

import (
	"crypto/tls"
	"net/http"
	"time"
)

// Client is how a node calls another node's HTTP API: the scheme to use and a transport that
// keeps connections to peers open (the default transport keeps two idle connections per host,
// so concurrent writes forwarded through a follower would dial the leader for nearly every
// request) and, with a cluster CA, presents the node's certificate and accepts only a peer
// certificate the CA signed.
type Client struct {
	// Scheme is "https" when the API serves TLS, else "http".
	Scheme string
	// Transport is shared by every node-to-node call.
	Transport *http.Transport
	// HTTP is a client over Transport with a 10 s timeout, for short calls (health, join).
	HTTP *http.Client
}

// NewClient returns the client for a cluster whose API serves TLS when https is set. t is the
// cluster TLS (nil: peers' certificates are checked against the system's roots, as any HTTPS
// client would).
func NewClient(t *TLS, https bool) *Client {
	tr := &http.Transport{
		Proxy:               nil,
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: HandshakeTimeout,
		ForceAttemptHTTP2:   false,
	}
	if t != nil {
		tr.TLSClientConfig = t.ClientConfig()
	} else {
		tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	scheme := "http"
	if https {
		scheme = "https"
	}
	return &Client{Scheme: scheme, Transport: tr, HTTP: &http.Client{Transport: tr, Timeout: 10 * time.Second}}
}

// URL is the URL of path on the node whose API is at addr (host:port).
func (c *Client) URL(addr, path string) string { return c.Scheme + "://" + addr + path }
