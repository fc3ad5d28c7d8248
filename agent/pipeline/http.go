package pipeline

import (
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"

	"github.com/driftline/driftline/shared/contract/rows"
)

// IngestPath is where Handler answers.
const IngestPath = "/ingest"

// KindHeader names the row kind of a POST /ingest body when the query has no kind parameter.
const KindHeader = "X-Driftline-Kind"

// DefaultMaxBody bounds one POST /ingest body.
const DefaultMaxBody = 256 << 20

// Handler returns the POST /ingest endpoint for the agent's metrics listener. The body is read
// as CSV (Content-Type text/csv), JSONL (application/x-ndjson, application/jsonl,
// application/x-jsonlines) or JSON (application/json: one array of objects, or JSONL), at most
// maxBody bytes (DefaultMaxBody when 0). It answers 200 with the request's Summary as JSON —
// invalid rows included: they are quarantined, not refused — 400 when the body cannot be read
// to its end (the rows before that point were processed; the summary says how many), 405 for
// another method, 413 for a body over the limit, 415 for another media type, and 503 while the
// agent has no contract. The kind query parameter (or the X-Driftline-Kind header) says what the
// rows are: inputs (default), predictions or labels; predictions and labels answer 503 while the
// active model version has no output reference, and an unknown kind is 400. Errors are
// application/problem+json.
func (p *Pipeline) Handler(maxBody int64) http.Handler {
	if maxBody <= 0 {
		maxBody = DefaultMaxBody
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			problem(w, http.StatusMethodNotAllowed, "method-not-allowed", "use POST", nil)
			return
		}
		f, err := formatOfMedia(r.Header.Get("Content-Type"))
		if err != nil {
			problem(w, http.StatusUnsupportedMediaType, "unsupported-media-type", err.Error(), nil)
			return
		}
		kind := r.URL.Query().Get("kind")
		if kind == "" {
			kind = r.Header.Get(KindHeader)
		}
		body := http.MaxBytesReader(w, r.Body, maxBody)
		sum, err := p.IngestKind(kind, "http", f, body)
		var tooBig *http.MaxBytesError
		switch {
		case errors.Is(err, ErrUnknownKind):
			problem(w, http.StatusBadRequest, "unknown-kind", fmt.Sprintf("kind %q: use inputs, predictions or labels (predictions and labels need an active model version with an output reference)", kind), nil)
		case errors.Is(err, ErrNoReference):
			w.Header().Set("Retry-After", "10")
			problem(w, http.StatusServiceUnavailable, "no-output-reference", err.Error(), nil)
		case errors.Is(err, ErrNoContract):
			w.Header().Set("Retry-After", "10")
			problem(w, http.StatusServiceUnavailable, "no-contract", err.Error(), nil)
		case errors.As(err, &tooBig):
			problem(w, http.StatusRequestEntityTooLarge, "body-too-large",
				fmt.Sprintf("body over %d bytes; the rows before the limit were processed", maxBody), &sum)
		case err != nil:
			problem(w, http.StatusBadRequest, "unreadable-body", err.Error(), &sum)
		default:
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(sum)
		}
	})
}

// formatOfMedia maps a Content-Type to a rows format.
func formatOfMedia(ct string) (rows.Format, error) {
	if ct == "" {
		return 0, errors.New("Content-Type is required: text/csv, application/json or application/x-ndjson")
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return 0, fmt.Errorf("Content-Type %q: %v", ct, err)
	}
	switch mt {
	case "text/csv", "application/csv":
		return rows.FormatCSV, nil
	case "application/x-ndjson", "application/jsonl", "application/x-jsonlines", "application/jsonlines":
		return rows.FormatJSONL, nil
	case "application/json":
		return rows.FormatJSON, nil
	}
	return 0, fmt.Errorf("media type %q not accepted: use text/csv, application/json or application/x-ndjson", mt)
}

// problemBody is an RFC 7807 answer, with the partial summary where rows were processed.
type problemBody struct {
	Type    string   `json:"type"`
	Title   string   `json:"title"`
	Status  int      `json:"status"`
	Detail  string   `json:"detail"`
	Summary *Summary `json:"summary,omitempty"`
}

func problem(w http.ResponseWriter, status int, typ, detail string, sum *Summary) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(problemBody{Type: "https://driftline.dev/problems/agent/" + typ,
		Title: http.StatusText(status), Status: status, Detail: detail, Summary: sum})
}
