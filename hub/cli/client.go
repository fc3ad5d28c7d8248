package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

// maxAnswerBytes bounds a JSON answer read into memory (artifact downloads stream instead).
const maxAnswerBytes = 64 << 20

// client calls the hub's HTTP API with a bearer token. JSON requests carry one Idempotency-Key
// per call, so a retry after 503 (no leader yet) is applied once by the hub.
type client struct {
	base  string
	token string
	http  *http.Client
	// retries is how many times a replayable request is retried after 503.
	retries int
}

func newClient(base, token string) (*client, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, usagef("hub URL %q: want http://HOST:PORT or https://HOST:PORT", base)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DialContext = (&net.Dialer{Timeout: 10 * time.Second}).DialContext
	tr.ResponseHeaderTimeout = 5 * time.Minute // an approval waits for replication of every chunk
	return &client{base: strings.TrimRight(base, "/"), token: token, http: &http.Client{Transport: tr}, retries: 5}, nil
}

// url joins the base URL, an API path and a query.
func (c *client) url(path string, q url.Values) string {
	s := c.base + path
	if len(q) > 0 {
		s += "?" + q.Encode()
	}
	return s
}

// request builds a request with the token and the given body.
func (c *client) request(ctx context.Context, method, path string, q url.Values, body io.Reader, contentType string) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.url(path, q), body)
	if err != nil {
		return nil, usagef("build request: %v", err)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Accept", "application/json")
	return req, nil
}

// send performs req and turns transport failures into ErrUnavailable.
func (c *client) send(req *http.Request) (*http.Response, error) {
	res, err := c.http.Do(req)
	if err != nil {
		if ctxErr := req.Context().Err(); ctxErr != nil {
			return nil, fmt.Errorf("%w: %s %s: %w", ErrUnavailable, req.Method, req.URL.Path, ctxErr)
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("%w: %s %s: %w", ErrUnavailable, req.Method, req.URL.Redacted(), err)
	}
	return res, nil
}

// download GETs path for its body, asking for accept when that is set, and returns the answer
// of a 200 for the caller to read and close; any other status becomes an *APIError.
func (c *client) download(ctx context.Context, path, accept string) (*http.Response, error) {
	req, err := c.request(ctx, http.MethodGet, path, nil, nil, "")
	if err != nil {
		return nil, err
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	res, err := c.send(req)
	if err != nil {
		return nil, err
	}
	if res.StatusCode != http.StatusOK {
		return nil, errorOf(res)
	}
	return res, nil
}

// JSON sends body (nil for none) as JSON and returns the raw answer of a 2xx, decoding it into
// out when out is not nil. A non-2xx answer becomes an *APIError. A 503 is retried with the same
// Idempotency-Key, honouring Retry-After.
func (c *client) JSON(ctx context.Context, method, path string, q url.Values, body, out any) ([]byte, error) {
	var payload []byte
	if body != nil {
		var err error
		if payload, err = json.Marshal(body); err != nil {
			return nil, usagef("encode request: %v", err)
		}
	}
	key := uuid.NewString()
	for attempt := 0; ; attempt++ {
		var rd io.Reader
		ct := ""
		if payload != nil {
			rd, ct = bytes.NewReader(payload), "application/json"
		}
		req, err := c.request(ctx, method, path, q, rd, ct)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Idempotency-Key", key)
		res, err := c.send(req)
		if err != nil {
			return nil, err
		}
		if res.StatusCode == http.StatusServiceUnavailable && attempt < c.retries {
			wait := retryAfter(res.Header.Get("Retry-After"), attempt)
			drain(res)
			select {
			case <-ctx.Done():
				return nil, fmt.Errorf("%w: %w", ErrUnavailable, ctx.Err())
			case <-time.After(wait):
			}
			continue
		}
		return readAnswer(res, out)
	}
}

// retryAfter turns a Retry-After header (seconds) into a wait, capped at 5 s; without one it
// backs off from 200 ms.
func retryAfter(h string, attempt int) time.Duration {
	if s, err := strconv.Atoi(h); err == nil && s >= 0 {
		return min(time.Duration(s)*time.Second, 5*time.Second)
	}
	return time.Duration(200*(attempt+1)) * time.Millisecond
}

func drain(res *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 1<<20))
	res.Body.Close()
}

// readAnswer reads a JSON answer and closes its body.
func readAnswer(res *http.Response, out any) ([]byte, error) {
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, maxAnswerBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%w: read answer of %s: %w", ErrUnavailable, res.Request.URL.Path, err)
	}
	if len(b) > maxAnswerBytes {
		return nil, fmt.Errorf("%w: answer of %s is larger than %d bytes", ErrUnavailable, res.Request.URL.Path, maxAnswerBytes)
	}
	if res.StatusCode < 200 || res.StatusCode > 299 {
		return nil, problemOf(res.StatusCode, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return nil, fmt.Errorf("%w: answer of %s is not the expected JSON: %w", ErrUnavailable, res.Request.URL.Path, err)
		}
	}
	return b, nil
}

// problemOf decodes a problem document; a body that is not one still yields an APIError with
// the status and the start of the body as detail.
func problemOf(status int, body []byte) *APIError {
	e := &APIError{}
	if err := json.Unmarshal(body, e); err != nil || (e.Title == "" && e.Detail == "") {
		e = &APIError{Detail: strings.TrimSpace(truncate(string(body), 300))}
	}
	e.Status = status
	return e
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// errorOf reads a non-2xx streamed answer (download, upload) into an APIError.
func errorOf(res *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	res.Body.Close()
	return problemOf(res.StatusCode, b)
}

// listAll follows next_cursor from path until the end and returns every item, raw.
func (c *client) listAll(ctx context.Context, path string, q url.Values) ([]json.RawMessage, error) {
	if q == nil {
		q = url.Values{}
	}
	q.Set("limit", "1000")
	var items []json.RawMessage
	for {
		var page struct {
			Items      []json.RawMessage `json:"items"`
			NextCursor *string           `json:"next_cursor"`
		}
		if _, err := c.JSON(ctx, http.MethodGet, path, q, nil, &page); err != nil {
			return nil, err
		}
		items = append(items, page.Items...)
		if page.NextCursor == nil || *page.NextCursor == "" {
			return items, nil
		}
		if q.Get("cursor") == *page.NextCursor {
			return nil, fmt.Errorf("%w: %s repeats cursor %q", ErrUnavailable, path, *page.NextCursor)
		}
		q.Set("cursor", *page.NextCursor)
	}
}

// decodeItems decodes raw list items into T.
func decodeItems[T any](raw []json.RawMessage) ([]T, error) {
	out := make([]T, 0, len(raw))
	for _, r := range raw {
		var v T
		if err := json.Unmarshal(r, &v); err != nil {
			return nil, fmt.Errorf("%w: list item is not the expected JSON: %w", ErrUnavailable, err)
		}
		out = append(out, v)
	}
	return out, nil
}

// jsonMarshal encodes a request part; a failure is a bug in the caller's value, reported as usage.
func jsonMarshal(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, usagef("encode %T: %v", v, err)
	}
	return b, nil
}
