package webhook

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/driftline/driftline/hub/state"
)

// Source is the CloudEvents source of every event the hub sends.
const Source = "urn:driftline:hub"

// OpenLineageSchema is the dataschema of dataset events, whose data is an OpenLineage RunEvent.
const OpenLineageSchema = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"

// Producer is the OpenLineage producer of the hub's run events.
const Producer = "https://github.com/driftline/driftline"

// CloudEvent is a CloudEvents 1.0 event in structured mode (JSON format).
type CloudEvent struct {
	SpecVersion     string          `json:"specversion"`
	ID              string          `json:"id"`
	Source          string          `json:"source"`
	Type            string          `json:"type"`
	Subject         string          `json:"subject,omitempty"`
	Time            string          `json:"time"`
	DataContentType string          `json:"datacontenttype"`
	DataSchema      string          `json:"dataschema,omitempty"`
	Data            json.RawMessage `json:"data"`
}

// Envelope renders a recorded event as the CloudEvent its deliveries carry. It depends only on
// the event, so every attempt, from any leader, sends the same body.
func Envelope(ev state.WebhookEvent) (CloudEvent, error) {
	ce := CloudEvent{
		SpecVersion: "1.0", ID: ev.ID, Source: Source, Type: ev.Type, Subject: ev.Subject,
		Time: time.UnixMilli(ev.Time).UTC().Format(time.RFC3339Nano), DataContentType: "application/json", Data: ev.Data,
	}
	if ev.Type == state.EventDatasetVersion || ev.Type == state.EventDatasetCandidate {
		var d state.DatasetEventData
		if err := json.Unmarshal(ev.Data, &d); err != nil {
			return ce, fmt.Errorf("event %s: dataset data: %w", ev.ID, err)
		}
		b, err := json.Marshal(DatasetRunEvent(ev, d))
		if err != nil {
			return ce, err
		}
		ce.Data, ce.DataSchema = b, OpenLineageSchema
	}
	return ce, nil
}

// RunEvent is an OpenLineage 2-0-2 RunEvent.
type RunEvent struct {
	EventType string      `json:"eventType"`
	EventTime string      `json:"eventTime"`
	Producer  string      `json:"producer"`
	SchemaURL string      `json:"schemaURL"`
	Run       OLRun       `json:"run"`
	Job       OLJob       `json:"job"`
	Inputs    []OLDataset `json:"inputs"`
	Outputs   []OLDataset `json:"outputs"`
}

// OLRun is a RunEvent's run.
type OLRun struct {
	RunID  string         `json:"runId"`
	Facets map[string]any `json:"facets,omitempty"`
}

// OLJob is a RunEvent's job.
type OLJob struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
}

// OLDataset is a RunEvent's input or output dataset.
type OLDataset struct {
	Namespace string         `json:"namespace"`
	Name      string         `json:"name"`
	Facets    map[string]any `json:"facets,omitempty"`
}

// Namespace is the OpenLineage namespace of Driftline's registry datasets (as the hub's own
// OpenLineage ingest reads it: name "temps@3" is dataset:temps@3).
const Namespace = "driftline"

// DatasetRunEvent describes a new dataset version as a completed run of the job that made it
// (driftline.collect-samples for a candidate, driftline.dataset-push otherwise) whose inputs are
// the version's parents. The run id is derived from the event id.
func DatasetRunEvent(ev state.WebhookEvent, d state.DatasetEventData) RunEvent {
	job := "dataset-push"
	if d.Candidate {
		job = "collect-samples"
	}
	re := RunEvent{
		EventType: "COMPLETE", EventTime: time.UnixMilli(ev.Time).UTC().Format(time.RFC3339Nano),
		Producer: Producer, SchemaURL: OpenLineageSchema,
		Run: OLRun{RunID: uuid.NewSHA1(uuid.NameSpaceURL, []byte(Source+"/"+ev.ID)).String()},
		Job: OLJob{Namespace: Namespace, Name: job}, Inputs: []OLDataset{},
	}
	for _, p := range d.Parents {
		name := fmt.Sprintf("%s@%d", p.Dataset, p.Version)
		if p.Model != "" {
			name = fmt.Sprintf("model:%s@%d", p.Model, p.Version)
		}
		re.Inputs = append(re.Inputs, OLDataset{Namespace: Namespace, Name: name})
	}
	facets := map[string]any{}
	if d.SourceURI != "" {
		facets["dataSource"] = map[string]any{
			"_producer": Producer, "_schemaURL": "https://openlineage.io/spec/facets/1-0-1/DatasourceDatasetFacet.json",
			"name": d.SourceURI, "uri": d.SourceURI,
		}
	}
	if d.SampleSHA256 != "" {
		facets["version"] = map[string]any{
			"_producer": Producer, "_schemaURL": "https://openlineage.io/spec/facets/1-0-1/DatasetVersionDatasetFacet.json",
			"datasetVersion": fmt.Sprint(d.Version),
		}
	}
	out := OLDataset{Namespace: Namespace, Name: fmt.Sprintf("%s@%d", d.Dataset, d.Version)}
	if len(facets) > 0 {
		out.Facets = facets
	}
	re.Outputs = []OLDataset{out}
	return re
}
