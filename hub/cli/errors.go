package cli

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// Exit codes of the driftline command. They are part of the CLI's contract: scripts branch on them.
const (
	// ExitOK means the command did what was asked.
	ExitOK = 0
	// ExitRefused means the hub answered with a 4xx problem, or a check (audit verify) failed.
	ExitRefused = 1
	// ExitUsage means the command line or a local input file was wrong.
	ExitUsage = 2
	// ExitUnavailable means the hub could not be reached or failed (5xx).
	ExitUnavailable = 3
)

var (
	// ErrUsage marks a wrong command line or unusable local input (exit 2).
	ErrUsage = errors.New("usage error")
	// ErrRefused marks a request the hub refused with a 4xx answer (exit 1).
	ErrRefused = errors.New("the hub refused the request")
	// ErrUnavailable marks a hub that could not be reached, answered 5xx or answered nonsense (exit 3).
	ErrUnavailable = errors.New("the hub is unavailable")
	// ErrAuditBroken marks an audit log whose hash chain does not hold (exit 1).
	ErrAuditBroken = errors.New("audit chain broken")
)

// usagef returns an error wrapping ErrUsage.
func usagef(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrUsage, fmt.Sprintf(format, args...))
}

// APIError is a problem+json answer of the hub (RFC 7807), or a non-2xx answer without one.
type APIError struct {
	// Status is the HTTP status code.
	Status int
	// Type, Title, Detail and Field are the problem document's members.
	Type   string `json:"type"`
	Title  string `json:"title"`
	Detail string `json:"detail"`
	Field  string `json:"field"`
}

// Error renders the problem the way a person reads it: "404 not found: detail (field: x)".
func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d", e.Status)
	title := e.Title
	if title == "" {
		title = strings.ToLower(http.StatusText(e.Status))
	}
	if title != "" {
		b.WriteString(" " + title)
	}
	if e.Detail != "" {
		b.WriteString(": " + e.Detail)
	}
	if e.Field != "" {
		b.WriteString(" (field: " + e.Field + ")")
	}
	return b.String()
}

// Unwrap classifies the answer: 5xx is ErrUnavailable, anything else ErrRefused.
func (e *APIError) Unwrap() error {
	if e.Status >= 500 {
		return ErrUnavailable
	}
	return ErrRefused
}

// exitCode maps an error returned by a command to the process exit code.
func exitCode(err error) int {
	switch {
	case err == nil:
		return ExitOK
	case errors.Is(err, ErrUnavailable):
		return ExitUnavailable
	case errors.Is(err, ErrRefused), errors.Is(err, ErrAuditBroken):
		return ExitRefused
	default:
		// ErrUsage and cobra's own errors (unknown command, bad flag, wrong argument count).
		return ExitUsage
	}
}
