package cluster

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
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
	// Timeout bounds one call of the cluster service (Apply, ReadIndex, Member); 0 means
	// ForwardTimeout.
	Timeout time.Duration
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

var (
	// ErrUnavailable is a peer's 503 (no leader yet, an election): the call may be retried.
	ErrUnavailable = errors.New("cluster: peer unavailable")
	// ErrUnauthorized is a peer's 401: it does not (yet) know the token.
	ErrUnauthorized = errors.New("cluster: token refused")
	// ErrNoService is a peer's 404 or 405 for a call of the cluster service: a build from
	// before it (a rolling upgrade).
	ErrNoService = errors.New("cluster: the peer has no cluster service")
)

// PostJSON posts body as JSON to url with the bearer token and decodes a 200 or 201 answer into
// out (nil: discarded). Another status is an error quoting the answer; a 503 wraps
// ErrUnavailable.
func (c *Client) PostJSON(ctx context.Context, url, token string, body, out any) error {
	return c.do(ctx, http.MethodPost, url, token, body, out)
}

// do is PostJSON with any method; a nil body sends none.
func (c *Client) do(ctx context.Context, method, url, token string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := c.HTTP.Do(req)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	defer res.Body.Close()
	rb, _ := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	switch {
	case res.StatusCode == http.StatusOK || res.StatusCode == http.StatusCreated:
		if out == nil {
			return nil
		}
		return json.Unmarshal(rb, out)
	case res.StatusCode == http.StatusServiceUnavailable:
		return fmt.Errorf("%w: %s: %s", ErrUnavailable, res.Status, strings.TrimSpace(string(rb)))
	case res.StatusCode == http.StatusUnauthorized:
		return fmt.Errorf("%w: %s: %s", ErrUnauthorized, res.Status, strings.TrimSpace(string(rb)))
	}
	return fmt.Errorf("cluster: %s: %s", res.Status, strings.TrimSpace(string(rb)))
}

// PostRetry is PostJSON retried with a growing pause while the peer is unavailable (up to 30
// attempts), for calls made while a cluster forms.
func (c *Client) PostRetry(ctx context.Context, url, token string, body, out any) error {
	return c.PostRetryWhile(ctx, url, token, body, out, func(err error) bool { return errors.Is(err, ErrUnavailable) })
}

// PostRetryWhile is PostJSON retried with a growing pause (up to 30 attempts) while retry says
// the error may pass.
func (c *Client) PostRetryWhile(ctx context.Context, url, token string, body, out any, retry func(error) bool) error {
	var last error
	for attempt := 0; attempt < 30; attempt++ {
		last = c.PostJSON(ctx, url, token, body, out)
		if last == nil || !retry(last) {
			return last
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(200*(attempt+1)) * time.Millisecond):
		}
	}
	return last
}
