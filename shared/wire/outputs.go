package wire

import (
	"encoding/json"
	"fmt"
)

// Reports about a model's outputs (SPEC section 10): prediction drift against the model
// version's output reference, and performance over the labels that joined predictions. Both are
// flat JSON, one message per window, so Grafana or Node-RED graph a field without unpacking.

// PredictionDrift is the PREFIX/dev/{id}/prediction_drift message: one window's predictions
// scored against the output reference's prediction profile, with the same methods and
// calibration as an input feature.
type PredictionDrift struct {
	Header
	Window
	ModelRef
	// ReportSeq numbers the report for the hub's acknowledgement (zero from older agents).
	ReportSeq
	// Prediction names the prediction field.
	Prediction string `json:"prediction"`
	// Rows counts the window's valid predictions, Invalid those that broke the contract.
	Rows    int64 `json:"rows"`
	Invalid int64 `json:"invalid"`
	// Method, Score, ScoreType, Threshold, Calibrated and PValue are as in DriftFeature.
	Method     string   `json:"method"`
	Score      float64  `json:"score"`
	ScoreType  string   `json:"score_type,omitempty"`
	Threshold  float64  `json:"threshold"`
	Calibrated bool     `json:"calibrated"`
	PValue     *float64 `json:"p_value,omitempty"`
	// Drift is 1 when the predictions drifted, else 0.
	Drift int `json:"drift"`
}

// Validate checks the model reference (required) and the ranges.
func (d PredictionDrift) Validate() error {
	if err := checkModelReport(d.Header, &d.ReportSeq, d.Window, d.ModelRef); err != nil {
		return err
	}
	if err := ValidateName("prediction", d.Prediction); err != nil {
		return err
	}
	if err := checkNonNeg("rows", d.Rows); err != nil {
		return err
	}
	if err := checkNonNeg("invalid", d.Invalid); err != nil {
		return err
	}
	if err := ValidateName("method", d.Method); err != nil {
		return err
	}
	for f, v := range map[string]float64{"score": d.Score, "threshold": d.Threshold} {
		if err := checkFinite(f, v); err != nil {
			return err
		}
	}
	return checkFlag("drift", d.Drift)
}

// DecodePredictionDrift parses and validates a prediction drift payload.
func DecodePredictionDrift(b []byte) (PredictionDrift, error) { return decode[PredictionDrift](b) }

// Performance is the PREFIX/dev/{id}/performance message: the predictions whose labels joined
// during one window, scored. Value is the output contract's metric, Reference what the
// validation set scored, Relative their ratio as rollout gates read it (1: as good as the
// reference; below 1 worse, for error metrics too).
type Performance struct {
	Header
	Window
	ModelRef
	// ReportSeq numbers the report for the hub's acknowledgement (zero from older agents).
	ReportSeq
	// Task is "classification" or "regression"; Metric the headline metric ("accuracy",
	// "f1", "mae", "rmse").
	Task   string `json:"task"`
	Metric string `json:"metric"`
	// Labels is the number of joined (prediction, label) pairs the values rest on.
	Labels    int64   `json:"labels"`
	Value     float64 `json:"value"`
	Reference float64 `json:"reference"`
	Relative  float64 `json:"relative"`
	// The task's metrics.
	Accuracy *float64 `json:"accuracy,omitempty"`
	F1       *float64 `json:"f1,omitempty"`
	MAE      *float64 `json:"mae,omitempty"`
	RMSE     *float64 `json:"rmse,omitempty"`
	// PendingPredictions and PendingLabels are held waiting for their other half; Expired
	// counts (since the agent started) predictions that never got a label and labels that
	// never met their prediction, dropped for age or space; Duplicates repeated ids ignored.
	PendingPredictions int64 `json:"pending_predictions"`
	PendingLabels      int64 `json:"pending_labels"`
	Expired            int64 `json:"expired"`
	Duplicates         int64 `json:"duplicates"`
}

// Validate checks the model reference (required), the metric and the ranges.
func (p Performance) Validate() error {
	if err := checkModelReport(p.Header, &p.ReportSeq, p.Window, p.ModelRef); err != nil {
		return err
	}
	switch p.Task {
	case "classification", "regression":
	default:
		return bad("task", "must be classification or regression, got %q", p.Task)
	}
	switch p.Metric {
	case "accuracy", "f1", "mae", "rmse":
	default:
		return bad("metric", "must be accuracy, f1, mae or rmse, got %q", p.Metric)
	}
	for f, v := range map[string]int64{"labels": p.Labels, "pending_predictions": p.PendingPredictions,
		"pending_labels": p.PendingLabels, "expired": p.Expired, "duplicates": p.Duplicates} {
		if err := checkNonNeg(f, v); err != nil {
			return err
		}
	}
	if p.Labels == 0 {
		return bad("labels", "a performance report rests on at least one label")
	}
	for f, v := range map[string]float64{"value": p.Value, "reference": p.Reference, "relative": p.Relative} {
		if err := checkFinite(f, v); err != nil {
			return err
		}
	}
	return nil
}

// DecodePerformance parses and validates a performance payload.
func DecodePerformance(b []byte) (Performance, error) { return decode[Performance](b) }

// PredictionDrift returns PREFIX/dev/{id}/prediction_drift.
func (t Topics) PredictionDrift(id string) string { return t.dev(id, "prediction_drift") }

// Performance returns PREFIX/dev/{id}/performance.
func (t Topics) Performance(id string) string { return t.dev(id, "performance") }

// Sample is the PREFIX/dev/{id}/sample message: rows of one drifted window, reservoir-sampled on
// the device, sent only when the training dataset's contract allows collection
// (x-driftline.collect) and within the device's byte budget. Rows are JSON objects keyed by the
// contract's field names.
type Sample struct {
	Header
	Window
	ModelRef
	// Reason is "input_drift" or "prediction_drift".
	Reason string `json:"reason"`
	// WindowRows is how many valid rows the window had; Rows the sampled ones.
	WindowRows int64             `json:"window_rows"`
	Rows       []json.RawMessage `json:"rows"`
	// Invalid counts the window's invalid rows; InvalidRows is a separate reservoir sample of
	// them, as read (each cell's text, or null when absent; columns the contract does not name
	// included; an unparsable row as {"_row": text}).
	Invalid     int64             `json:"invalid"`
	InvalidRows []json.RawMessage `json:"invalid_rows,omitempty"`
}

// MaxSampleRows bounds the rows of one Sample.
const MaxSampleRows = 10000

// Validate checks the model reference (required), the reason and the rows.
func (s Sample) Validate() error {
	if err := checkModelReport(s.Header, nil, s.Window, s.ModelRef); err != nil {
		return err
	}
	if s.Reason != "input_drift" && s.Reason != "prediction_drift" {
		return bad("reason", "must be input_drift or prediction_drift, got %q", s.Reason)
	}
	if len(s.Rows)+len(s.InvalidRows) == 0 || len(s.Rows) > MaxSampleRows || len(s.InvalidRows) > MaxSampleRows {
		return bad("rows", "%d rows and %d invalid rows, want 1..%d in all, at most %d each", len(s.Rows), len(s.InvalidRows), 2*MaxSampleRows, MaxSampleRows)
	}
	for name, rs := range map[string][]json.RawMessage{"rows": s.Rows, "invalid_rows": s.InvalidRows} {
		for i, r := range rs {
			if len(r) == 0 || r[0] != '{' {
				return bad(fmt.Sprintf("%s[%d]", name, i), "must be a JSON object")
			}
		}
	}
	if err := checkNonNeg("window_rows", s.WindowRows); err != nil {
		return err
	}
	return checkNonNeg("invalid", s.Invalid)
}

// DecodeSample parses and validates a sample payload.
func DecodeSample(b []byte) (Sample, error) { return decode[Sample](b) }

// Sample returns PREFIX/dev/{id}/sample.
func (t Topics) Sample(id string) string { return t.dev(id, "sample") }
