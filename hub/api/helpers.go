package api

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/driftline/driftline/hub/command"
)

// decodeJSON reads a JSON body of at most the configured size into v, strictly: unknown fields,
// trailing data, a wrong content type and an empty body are each a 400 naming the problem.
func (s *Server) decodeJSON(c echo.Context, v any) error {
	ct := c.Request().Header.Get(echo.HeaderContentType)
	if ct != "" && !strings.HasPrefix(ct, "application/json") {
		return problem(http.StatusUnsupportedMediaType, ProblemUnsupported, "unsupported media type", "send application/json")
	}
	body, err := readBody(c, s.cfg.MaxBodyBytes)
	if err != nil {
		return err
	}
	return decodeStrict(body, v)
}

// decodeStrict decodes one JSON value with no unknown fields and nothing after it.
func decodeStrict(body []byte, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return badRequest("", "empty body: send a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		var se *json.SyntaxError
		switch {
		case errors.As(err, &te):
			return badRequest(te.Field, "field %q must be %s, got %s", te.Field, te.Type, te.Value)
		case errors.As(err, &se):
			return badRequest("", "malformed JSON at byte %d: %v", se.Offset, err)
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			f := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
			return badRequest(f, "unknown field %q", f)
		}
		return badRequest("", "malformed JSON: %v", err)
	}
	if dec.More() {
		return badRequest("", "trailing data after the JSON value")
	}
	return nil
}

// requestID returns the caller's Idempotency-Key (or X-Request-Id), scoped to the caller, or ""
// when it sent none. The state machine keeps the result of a keyed command for an hour and
// answers a retry with it instead of applying it again; an unkeyed write costs no such record.
func requestID(c echo.Context) string {
	for _, h := range []string{"Idempotency-Key", "X-Request-Id"} {
		if v := c.Request().Header.Get(h); v != "" && len(v) <= 128 {
			return actor(c) + "/" + v
		}
	}
	return ""
}

// apply proposes a command on behalf of the caller and returns its result; on a follower the
// command is forwarded to the leader (propose).
func (s *Server) apply(c echo.Context, t command.Type, body any) (any, error) {
	env, err := command.New(t, requestID(c), 0, actor(c), body)
	if err != nil {
		return nil, err
	}
	return s.propose(c.Request().Context(), env)
}

// pageParams reads limit and cursor.
func pageParams(c echo.Context) (string, int, error) {
	limit := 0
	if l := c.QueryParam("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 1000 {
			return "", 0, badRequest("limit", "limit must be an integer from 1 to 1000")
		}
		limit = n
	}
	return c.QueryParam("cursor"), limit, nil
}

// versionParam parses the {v} path parameter.
func versionParam(c echo.Context) (int, error) {
	v, err := strconv.Atoi(c.Param("v"))
	if err != nil || v < 1 {
		return 0, badRequest("v", "version must be a positive integer, got %q", c.Param("v"))
	}
	return v, nil
}

// readBody reads a JSON body of at most limit bytes. A body sent with Content-Encoding gzip (as
// the OpenLineage HTTP transport sends with compression on) is inflated, and the limit applies
// to the compressed and to the inflated bytes alike, so a gzip bomb costs at most limit bytes
// of memory and is refused with 413; broken gzip is 400, any other encoding 415.
func readBody(c echo.Context, limit int64) ([]byte, error) {
	tooLarge := func() error {
		return problem(http.StatusRequestEntityTooLarge, ProblemTooLarge, "payload too large",
			fmt.Sprintf("JSON bodies are limited to %d bytes (after decompression)", limit))
	}
	body, err := io.ReadAll(io.LimitReader(c.Request().Body, limit+1))
	if err != nil {
		return nil, badRequest("", "read body: %v", err)
	}
	if int64(len(body)) > limit {
		return nil, tooLarge()
	}
	switch enc := strings.ToLower(strings.TrimSpace(c.Request().Header.Get(echo.HeaderContentEncoding))); enc {
	case "", "identity":
		return body, nil
	case "gzip", "x-gzip":
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			return nil, badRequest("", "Content-Encoding gzip: %v", err)
		}
		plain, err := io.ReadAll(io.LimitReader(zr, limit+1))
		if err != nil {
			return nil, badRequest("", "Content-Encoding gzip: %v", err)
		}
		if int64(len(plain)) > limit {
			return nil, tooLarge()
		}
		return plain, nil
	default:
		return nil, problem(http.StatusUnsupportedMediaType, ProblemUnsupported, "unsupported content encoding",
			fmt.Sprintf("Content-Encoding %q: send the body plain or gzip", enc))
	}
}

// decodeLenient decodes one JSON value allowing unknown fields (for documents whose standard
// allows extensions, like OpenLineage facets).
func decodeLenient(body []byte, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return badRequest("", "empty body: send a JSON object")
	}
	if err := json.Unmarshal(body, v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return badRequest(te.Field, "field %q must be %s, got %s", te.Field, te.Type, te.Value)
		}
		return badRequest("", "malformed JSON: %v", err)
	}
	return nil
}
