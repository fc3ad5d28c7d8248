package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/driftline/driftline/hub/command"
	"github.com/driftline/driftline/hub/state"
)

var nodeRE = regexp.MustCompile(`^(dataset|model|rollout|device|job|window):[^\s]+$`)

func (s *Server) lineage(c echo.Context) error {
	node := c.QueryParam("node")
	if !nodeRE.MatchString(node) {
		return badRequest("node", "node must be KIND:NAME[@VERSION] with KIND dataset, model, rollout, device, job or window")
	}
	dir := c.QueryParam("direction")
	if dir == "" {
		dir = "both"
	}
	depth := 3
	if d := c.QueryParam("depth"); d != "" {
		n, err := strconv.Atoi(d)
		if err != nil || n < 1 || n > 50 {
			return badRequest("depth", "depth must be an integer from 1 to 50")
		}
		depth = n
	}
	g, err := s.read.Lineage(node, dir, depth)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, g)
}

// RunEvent is the part of an OpenLineage 2-0-2 RunEvent the hub reads and writes.
type RunEvent struct {
	EventType string      `json:"eventType,omitempty"`
	EventTime string      `json:"eventTime"`
	Producer  string      `json:"producer"`
	SchemaURL string      `json:"schemaURL"`
	Run       olRun       `json:"run"`
	Job       olJob       `json:"job"`
	Inputs    []olDataset `json:"inputs,omitempty"`
	Outputs   []olDataset `json:"outputs,omitempty"`
}

type olRun struct {
	RunID  string         `json:"runId"`
	Facets map[string]any `json:"facets,omitempty"`
}

type olJob struct {
	Namespace string         `json:"namespace"`
	Name      string         `json:"name"`
	Facets    map[string]any `json:"facets,omitempty"`
}

type olDataset struct {
	Namespace    string         `json:"namespace"`
	Name         string         `json:"name"`
	Facets       map[string]any `json:"facets,omitempty"`
	InputFacets  map[string]any `json:"inputFacets,omitempty"`
	OutputFacets map[string]any `json:"outputFacets,omitempty"`
}

// OpenLineageNamespace is the dataset namespace that names Driftline's own registry objects: a
// dataset {"namespace": "driftline", "name": "temps@3"} is the node dataset:temps@3, and a name
// with a kind ("model:fraud@2") names that node. Any other namespace N and name X become the
// node dataset:N/X.
const OpenLineageNamespace = "driftline"

const openLineageSchema = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"

var olEventTypes = map[string]bool{"START": true, "RUNNING": true, "COMPLETE": true, "ABORT": true, "FAIL": true, "OTHER": true}

func olNode(d olDataset) string {
	if d.Namespace == OpenLineageNamespace {
		if strings.Contains(d.Name, ":") {
			return d.Name
		}
		return "dataset:" + d.Name
	}
	return "dataset:" + d.Namespace + "/" + d.Name
}

// validate checks the fields OpenLineage 2-0-2 requires of a RunEvent.
func (e RunEvent) validate() error {
	switch {
	case e.EventTime == "":
		return badRequest("eventTime", "eventTime is required")
	case e.Producer == "":
		return badRequest("producer", "producer is required")
	case e.SchemaURL == "":
		return badRequest("schemaURL", "schemaURL is required")
	case e.EventType != "" && !olEventTypes[e.EventType]:
		return badRequest("eventType", "eventType %q: want START, RUNNING, COMPLETE, ABORT, FAIL or OTHER", e.EventType)
	case e.Job.Namespace == "":
		return badRequest("job.namespace", "job.namespace is required")
	case e.Job.Name == "":
		return badRequest("job.name", "job.name is required")
	}
	if _, err := time.Parse(time.RFC3339Nano, e.EventTime); err != nil {
		return badRequest("eventTime", "eventTime must be an ISO 8601 date-time with zone: %v", err)
	}
	if _, err := uuid.Parse(e.Run.RunID); err != nil || len(e.Run.RunID) != 36 {
		return badRequest("run.runId", "run.runId must be a UUID")
	}
	for i, d := range append(append([]olDataset{}, e.Inputs...), e.Outputs...) {
		if d.Namespace == "" || d.Name == "" {
			return badRequest(fmt.Sprintf("datasets[%d]", i), "every input and output needs namespace and name")
		}
	}
	return nil
}

// MaxOpenLineageBatch is the most events one request may carry.
const MaxOpenLineageBatch = 1000

// openLineageIngest accepts what the OpenLineage HTTP transport posts (POST /api/v1/lineage,
// its default path, and POST /api/v1/openlineage): one RunEvent, or a JSON array of RunEvents (the
// batch shape, also at .../batch), plain or gzip. Every event is checked before any is applied,
// so a batch with one bad event is refused whole, naming it; the events are then applied in
// order (START before COMPLETE). Each event's inputs and outputs become consumed and produced
// edges of its job node. Unknown fields and facets are allowed, as the spec says.
func (s *Server) openLineageIngest(c echo.Context) error {
	body, err := readBody(c, s.cfg.MaxBodyBytes)
	if err != nil {
		return err
	}
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 || trimmed[0] != '[' {
		cmd, err := s.decodeRunEvent(body)
		if err != nil {
			return err
		}
		res, err := s.apply(c, command.TypeOpenLineage, cmd)
		if err != nil {
			return err
		}
		return c.JSON(http.StatusCreated, res)
	}
	var raw []json.RawMessage
	if err := decodeLenient(body, &raw); err != nil {
		return err
	}
	switch {
	case len(raw) == 0:
		return badRequest("", "empty batch: send at least one RunEvent")
	case len(raw) > MaxOpenLineageBatch:
		return badRequest("", "a batch holds at most %d events, got %d", MaxOpenLineageBatch, len(raw))
	}
	cmds := make([]state.OpenLineageEvent, len(raw))
	for i, r := range raw {
		if cmds[i], err = s.decodeRunEvent(r); err != nil {
			var ae *Error
			if errors.As(err, &ae) {
				ae.P.Field = fmt.Sprintf("[%d]", i) + dotted(ae.P.Field)
				ae.P.Detail = fmt.Sprintf("event %d: %s", i, ae.P.Detail)
			}
			return err
		}
	}
	items := make([]any, 0, len(cmds))
	for i, cmd := range cmds {
		env, err := command.New(command.TypeOpenLineage, batchRequestID(c, i), 0, actor(c), cmd)
		if err != nil {
			return err
		}
		res, err := s.propose(c.Request().Context(), env)
		if err != nil {
			return fmt.Errorf("event %d of %d (the earlier ones are applied): %w", i, len(cmds), err)
		}
		items = append(items, res)
	}
	return c.JSON(http.StatusCreated, map[string]any{"accepted": len(items), "items": items})
}

// dotted prefixes a non-empty field path with a dot.
func dotted(field string) string {
	if field == "" {
		return ""
	}
	return "." + field
}

// batchRequestID is the request id of the i-th command of a request: the request's own id (from
// Idempotency-Key) with the position, so a retried batch applies each event once, and distinct
// events are never taken for retries of each other.
func batchRequestID(c echo.Context, i int) string {
	id := requestID(c)
	if id == "" {
		return ""
	}
	return fmt.Sprintf("%s#%d", id, i)
}

// decodeRunEvent decodes and checks one RunEvent and reduces it to the command the graph keeps.
// The spec's static events (DatasetEvent, JobEvent: no run) are refused by name: the graph
// records runs.
func (s *Server) decodeRunEvent(body []byte) (state.OpenLineageEvent, error) {
	var ev RunEvent
	if err := decodeLenient(body, &ev); err != nil {
		return state.OpenLineageEvent{}, err
	}
	var shape struct {
		Run     json.RawMessage `json:"run"`
		Dataset json.RawMessage `json:"dataset"`
	}
	_ = json.Unmarshal(body, &shape) // decodeLenient accepted it, so this cannot fail
	switch {
	case shape.Run == nil && (shape.Dataset != nil || strings.Contains(ev.SchemaURL, "DatasetEvent")):
		return state.OpenLineageEvent{}, badRequest("run", "a DatasetEvent (static dataset metadata) is not accepted: the hub records runs; send RunEvents")
	case shape.Run == nil && strings.Contains(ev.SchemaURL, "JobEvent"):
		return state.OpenLineageEvent{}, badRequest("run", "a JobEvent (static job lineage, no run) is not accepted: the hub records runs; send RunEvents")
	}
	if err := ev.validate(); err != nil {
		return state.OpenLineageEvent{}, err
	}
	if err := s.checkReservedNamespace(ev); err != nil {
		return state.OpenLineageEvent{}, err
	}
	if ev.EventType == "" {
		ev.EventType = "OTHER" // optional in 2-0-2: an event without a type is a run state update
	}
	cmd := state.OpenLineageEvent{
		RunID: ev.Run.RunID, EventType: ev.EventType, EventTime: ev.EventTime,
		Job: ev.Job.Namespace + "/" + ev.Job.Name, Producer: ev.Producer,
		Inputs: []string{}, Outputs: []string{},
	}
	for _, d := range ev.Inputs {
		cmd.Inputs = append(cmd.Inputs, olNode(d))
	}
	for _, d := range ev.Outputs {
		cmd.Outputs = append(cmd.Outputs, olNode(d))
	}
	return cmd, nil
}

// openLineageExport renders the registry's own actions (dataset versions and their parents,
// model versions and their training data) as OpenLineage RunEvents.
func (s *Server) openLineageExport(c echo.Context) error {
	var events []RunEvent
	ds, err := s.read.Datasets("", state.MaxLimit)
	if err != nil {
		return err
	}
	for _, d := range ds.Items {
		vs, err := s.read.DatasetVersions(d.Name, "", state.MaxLimit)
		if err != nil {
			return err
		}
		for _, v := range vs.Items {
			ev := registryEvent("dataset-version", state.DatasetNode(d.Name, v.Version), v.CreatedAt)
			for _, p := range v.Parents {
				name := p.Dataset
				if name == "" {
					name = d.Name
				}
				ev.Inputs = append(ev.Inputs, olDataset{Namespace: OpenLineageNamespace, Name: fmt.Sprintf("%s@%d", name, p.Version)})
			}
			ev.Outputs = []olDataset{{Namespace: OpenLineageNamespace, Name: fmt.Sprintf("%s@%d", d.Name, v.Version)}}
			events = append(events, ev)
		}
	}
	ms, err := s.read.Models("", state.MaxLimit)
	if err != nil {
		return err
	}
	for _, m := range ms.Items {
		vs, err := s.read.ModelVersions(m.Name, "", state.MaxLimit)
		if err != nil {
			return err
		}
		for _, v := range vs.Items {
			ev := registryEvent("model-version", state.ModelNode(m.Name, v.Version), v.CreatedAt)
			for _, t := range v.TrainedOn {
				ev.Inputs = append(ev.Inputs, olDataset{Namespace: OpenLineageNamespace, Name: fmt.Sprintf("%s@%d", t.Dataset, t.Version)})
			}
			ev.Outputs = []olDataset{{Namespace: OpenLineageNamespace, Name: state.ModelNode(m.Name, v.Version)}}
			events = append(events, ev)
		}
	}
	if events == nil {
		events = []RunEvent{}
	}
	return c.JSON(http.StatusOK, map[string]any{"items": events, "next_cursor": nil})
}

func registryEvent(job, node string, ts int64) RunEvent {
	return RunEvent{
		EventType: "COMPLETE",
		EventTime: time.UnixMilli(ts).UTC().Format(time.RFC3339Nano),
		Producer:  "https://github.com/driftline/driftline",
		SchemaURL: openLineageSchema,
		Run:       olRun{RunID: uuid.NewSHA1(uuid.NameSpaceURL, []byte("driftline:"+node)).String()},
		Job:       olJob{Namespace: OpenLineageNamespace, Name: job},
	}
}

func (s *Server) audit(c echo.Context) error {
	var f state.AuditFilter
	if v := c.QueryParam("since"); v != "" {
		if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
			f.Since = t.UnixMilli()
		} else if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			f.Since = n
		} else {
			return badRequest("since", "since must be RFC 3339 or Unix milliseconds")
		}
	}
	f.Actor = c.QueryParam("actor")
	cursor, limit, err := pageParams(c)
	if err != nil {
		return err
	}
	p, err := s.read.Audit(f, cursor, limit)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, p)
}
