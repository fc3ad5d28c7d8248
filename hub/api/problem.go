package api

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/driftline/driftline/hub/state"
	"github.com/driftline/driftline/hub/store"
)

// Problem is an RFC 7807 problem document. Type is a stable URI per kind of error, so that
// clients can branch on it; Detail says what was wrong for a person.
type Problem struct {
	Type     string `json:"type"`
	Title    string `json:"title"`
	Status   int    `json:"status"`
	Detail   string `json:"detail,omitempty"`
	Instance string `json:"instance,omitempty"`
	// Field names the request field at fault, when there is one.
	Field string `json:"field,omitempty"`
	// Extra carries problem-specific members (e.g. the overlapping devices of a conflict).
	Extra map[string]any `json:"extra,omitempty"`
}

// Problem type URIs. They are part of the API contract: never change one.
const (
	ProblemBase         = "https://driftline.dev/problems/"
	ProblemInvalid      = ProblemBase + "invalid-request"
	ProblemUnauthorized = ProblemBase + "unauthorized"
	ProblemForbidden    = ProblemBase + "forbidden"
	ProblemNotFound     = ProblemBase + "not-found"
	ProblemConflict     = ProblemBase + "conflict"
	ProblemExists       = ProblemBase + "already-exists"
	ProblemTooLarge     = ProblemBase + "payload-too-large"
	ProblemNoLeader     = ProblemBase + "no-leader"
	ProblemUnsupported  = ProblemBase + "unsupported-media-type"
	ProblemMethod       = ProblemBase + "method-not-allowed"
	ProblemInternal     = ProblemBase + "internal"
	// ProblemInvalidSample: a dataset sample that cannot give a reference profile (no rows,
	// no valid row, too few valid rows to calibrate, an unreadable header); the detail names
	// the first problems.
	ProblemInvalidSample = ProblemBase + "invalid-sample"
)

// Error is an error that knows its problem document.
type Error struct {
	P   Problem
	Err error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %v", e.P.Title, e.Err)
	}
	return e.P.Title + ": " + e.P.Detail
}

func (e *Error) Unwrap() error { return e.Err }

func problem(status int, typ, title, detail string) *Error {
	return &Error{P: Problem{Type: typ, Title: title, Status: status, Detail: detail}}
}

func badRequest(field, format string, args ...any) *Error {
	e := problem(http.StatusBadRequest, ProblemInvalid, "invalid request", fmt.Sprintf(format, args...))
	e.P.Field = field
	return e
}

func unauthorized(detail string) *Error {
	return problem(http.StatusUnauthorized, ProblemUnauthorized, "unauthorized", detail)
}

func forbidden(detail string) *Error {
	return problem(http.StatusForbidden, ProblemForbidden, "forbidden", detail)
}

func noLeader(detail string) *Error {
	return problem(http.StatusServiceUnavailable, ProblemNoLeader, "no leader", detail)
}

// toProblem maps any error to its problem document.
func toProblem(err error) Problem {
	var ae *Error
	if errors.As(err, &ae) {
		return ae.P
	}
	var he *echo.HTTPError
	if errors.As(err, &he) {
		p := Problem{Status: he.Code, Title: http.StatusText(he.Code), Detail: fmt.Sprint(he.Message)}
		switch he.Code {
		case http.StatusNotFound:
			p.Type = ProblemNotFound
		case http.StatusMethodNotAllowed:
			p.Type = ProblemMethod
		case http.StatusRequestEntityTooLarge:
			p.Type = ProblemTooLarge
		case http.StatusUnsupportedMediaType:
			p.Type = ProblemUnsupported
		case http.StatusUnauthorized:
			p.Type = ProblemUnauthorized
		default:
			p.Type = ProblemInvalid
			if he.Code >= 500 {
				p.Type = ProblemInternal
			}
		}
		return p
	}
	switch {
	case errors.Is(err, state.ErrNotFound):
		return Problem{Type: ProblemNotFound, Title: "not found", Status: 404, Detail: err.Error()}
	case errors.Is(err, state.ErrExists):
		return Problem{Type: ProblemExists, Title: "already exists", Status: 409, Detail: err.Error()}
	case errors.Is(err, state.ErrConflict):
		return Problem{Type: ProblemConflict, Title: "conflict", Status: 409, Detail: err.Error()}
	case errors.Is(err, state.ErrInvalid), errors.Is(err, state.ErrBadCursor):
		return Problem{Type: ProblemInvalid, Title: "invalid request", Status: 400, Detail: err.Error()}
	case errors.Is(err, store.ErrNotSplit) && errors.Is(err, store.ErrCommandTooBig):
		// A rollout command the leader would have written in parts, proposed whole because a
		// hub node of an older build does not know the parts yet (hub/store ClusterKnows).
		return Problem{Type: ProblemTooLarge, Title: "change too big", Status: http.StatusRequestEntityTooLarge,
			Detail: "the change is too big for one replicated transaction while a hub node runs an older build (a rolling upgrade in progress: until every node runs this release a rollout is written in one transaction, some 15,000-20,000 devices, not in parts): finish the upgrade and retry, or split it into rollouts by selector"}
	case errors.Is(err, store.ErrCommandTooBig):
		// The request was valid but one command of its change does not fit in one replicated
		// transaction. Rollouts are written in parts of state.DefaultPartDevices devices
		// (issue 18), so their size is no longer the cause; a part whose devices carry very large
		// label sets, or another command of several MB, still can be.
		return Problem{Type: ProblemTooLarge, Title: "change too big", Status: http.StatusRequestEntityTooLarge,
			Detail: fmt.Sprintf("the change is too big for one replicated transaction (~9 MB; rollouts are written %d devices at a time, so for a rollout: its devices' labels are too large): make it smaller", state.DefaultPartDevices)}
	}
	// The cause (a file path, a database message) is for the hub's log, not for the client:
	// errorHandler logs it under an incident id and answers with the id only.
	return Problem{Type: ProblemInternal, Title: "internal error", Status: 500}
}

// newIncidentID is a short random id that ties a 500 answer to its log line.
func newIncidentID() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// errorHandler writes every error as application/problem+json. It does nothing once the
// response is committed (a streamed download that failed half-way can only be cut).
func (s *Server) errorHandler(err error, c echo.Context) {
	if c.Response().Committed {
		s.log.Warn("error after response started", "path", c.Path(), "err", err)
		return
	}
	p := toProblem(err)
	if p.Status == http.StatusInternalServerError && s.store.IsNotLeader(err) {
		p = noLeader("leadership changed while the request ran; retry").P
	}
	p.Instance = c.Request().URL.Path
	if p.Status >= 500 && p.Status != http.StatusServiceUnavailable {
		incident := newIncidentID()
		if p.Detail == "" {
			p.Detail = "the hub failed to answer; its log has the cause under incident " + incident
		}
		s.log.Error("request failed", "method", c.Request().Method, "path", c.Request().URL.Path, "incident", incident, "err", err)
	}
	if p.Status == http.StatusServiceUnavailable {
		c.Response().Header().Set("Retry-After", strconv.Itoa(1))
	}
	c.Response().Header().Set(echo.HeaderContentType, "application/problem+json")
	c.Response().WriteHeader(p.Status)
	if c.Request().Method == http.MethodHead {
		return
	}
	_ = jsonEncode(c.Response(), p)
}
