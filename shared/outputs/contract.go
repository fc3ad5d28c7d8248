// Package outputs is what the hub and the agent share about a model's outputs: the output
// contract (which column is the prediction id, the prediction, the ground-truth label; the task
// and its metric), the output reference (a profile of the predictions on the validation set and
// the metric they scored), and the performance metrics, computed the same way on both sides.
//
// An output contract is a Table Schema with Driftline's extensions: a single-field primaryKey
// names the id; exactly one field has x-driftline.role "prediction" and exactly one "label";
// no other field is allowed. x-driftline.task ("classification" or "regression") and
// x-driftline.metric ("accuracy", "f1"; "mae", "rmse") say how performance is measured; the
// task defaults to regression for a number prediction and classification otherwise, the metric
// to accuracy or rmse. The prediction field's x-driftline.drift picks its drift method and
// threshold, and the schema's x-driftline.drift.calibrate calibrates it, as for an input field.
package outputs

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/driftline/driftline/shared/contract"
)

// ErrContract wraps every reason an output contract is refused.
var ErrContract = errors.New("output contract")

// Contract is a parsed output contract and the contracts derived from it.
type Contract struct {
	// Schema is the output contract as parsed.
	Schema *contract.Schema
	// ID, Prediction and Label name the fields.
	ID, Prediction, Label string
	// Task is contract.TaskClassification or contract.TaskRegression.
	Task string
	// Metric is the headline metric (contract.Metric*).
	Metric string

	// reference validates rows of the validation sample (id, prediction, label): the
	// prediction is its only scored field.
	reference *contract.Schema
	// predictions validates prediction rows on the device (id, prediction).
	predictions *contract.Schema
	// labels validates label rows on the device (id, label).
	labels *contract.Schema
}

// ParseContract parses and checks an output contract.
func ParseContract(b []byte) (*Contract, error) {
	s, err := contract.Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrContract, err)
	}
	c := &Contract{Schema: s}
	if len(s.PrimaryKey) != 1 {
		return nil, fmt.Errorf("%w: primaryKey must name the one prediction id field", ErrContract)
	}
	c.ID = s.PrimaryKey[0]
	for _, f := range s.Fields {
		switch {
		case f.Name == c.ID:
		case f.Role == contract.RolePrediction:
			if c.Prediction != "" {
				return nil, fmt.Errorf("%w: two prediction fields (%q, %q)", ErrContract, c.Prediction, f.Name)
			}
			c.Prediction = f.Name
		case f.Role == contract.RoleLabel:
			if c.Label != "" {
				return nil, fmt.Errorf("%w: two label fields (%q, %q)", ErrContract, c.Label, f.Name)
			}
			c.Label = f.Name
		default:
			return nil, fmt.Errorf("%w: field %q: an output contract holds the id, one prediction and one label field only (set x-driftline.role)", ErrContract, f.Name)
		}
	}
	if c.Prediction == "" || c.Label == "" {
		return nil, fmt.Errorf("%w: needs a field with x-driftline.role \"prediction\" and one with \"label\"", ErrContract)
	}
	pf := s.Fields[s.Index(c.Prediction)]
	lf := s.Fields[s.Index(c.Label)]
	if pf.Type != lf.Type {
		return nil, fmt.Errorf("%w: prediction %q is %s but label %q is %s", ErrContract, c.Prediction, pf.Type, c.Label, lf.Type)
	}
	c.Task = s.Driftline.Task
	if c.Task == "" {
		c.Task = contract.TaskClassification
		if pf.Type == contract.TypeNumber {
			c.Task = contract.TaskRegression
		}
	}
	switch c.Task {
	case contract.TaskRegression:
		if pf.Type != contract.TypeNumber && pf.Type != contract.TypeInteger {
			return nil, fmt.Errorf("%w: a regression prediction must be a number or integer, %q is %s", ErrContract, c.Prediction, pf.Type)
		}
	case contract.TaskClassification:
		if pf.Type == contract.TypeNumber {
			return nil, fmt.Errorf("%w: a classification prediction is a class (string, integer or boolean), %q is a number", ErrContract, c.Prediction)
		}
		if pf.Type == contract.TypeDate || pf.Type == contract.TypeDatetime {
			return nil, fmt.Errorf("%w: prediction %q is a %s", ErrContract, c.Prediction, pf.Type)
		}
	}
	c.Metric = s.Driftline.Metric
	switch {
	case c.Metric == "" && c.Task == contract.TaskRegression:
		c.Metric = contract.MetricRMSE
	case c.Metric == "":
		c.Metric = contract.MetricAccuracy
	case c.Task == contract.TaskRegression && (c.Metric == contract.MetricAccuracy || c.Metric == contract.MetricF1),
		c.Task == contract.TaskClassification && (c.Metric == contract.MetricMAE || c.Metric == contract.MetricRMSE):
		return nil, fmt.Errorf("%w: metric %s does not fit a %s task", ErrContract, c.Metric, c.Task)
	}
	if c.reference, err = derive(s, map[string]contract.Role{c.ID: contract.RoleLabel, c.Prediction: contract.RoleFeature, c.Label: contract.RoleLabel}); err != nil {
		return nil, err
	}
	if c.predictions, err = derive(s, map[string]contract.Role{c.ID: contract.RoleLabel, c.Prediction: contract.RoleFeature}); err != nil {
		return nil, err
	}
	if c.labels, err = derive(s, map[string]contract.Role{c.ID: contract.RoleLabel, c.Label: contract.RoleLabel}); err != nil {
		return nil, err
	}
	return c, nil
}

// derive returns the contract of s restricted to the fields in roles, each with its new role
// (only a "feature" is scored for drift), keeping everything else as written but the primary
// key's uniqueness.
func derive(s *contract.Schema, roles map[string]contract.Role) (*contract.Schema, error) {
	b, err := json.Marshal(s)
	if err != nil {
		return nil, err
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, err
	}
	var kept []any
	for _, f := range doc["fields"].([]any) {
		fm := f.(map[string]any)
		role, ok := roles[fm["name"].(string)]
		if !ok {
			continue
		}
		ext, _ := fm["x-driftline"].(map[string]any)
		if ext == nil {
			ext = map[string]any{}
		}
		ext["role"] = string(role)
		fm["x-driftline"] = ext
		if fm["name"] == s.PrimaryKey[0] {
			cons, _ := fm["constraints"].(map[string]any)
			if cons == nil {
				cons = map[string]any{}
			}
			cons["required"] = true
			delete(cons, "unique")
			fm["constraints"] = cons
		}
		kept = append(kept, fm)
	}
	doc["fields"] = kept
	// The id stays required but not unique: a repeated id is the join's business (the first
	// prediction and the first label count), across windows as within one.
	delete(doc, "primaryKey")
	if ext, ok := doc["x-driftline"].(map[string]any); ok {
		delete(ext, "task")
		delete(ext, "metric")
	}
	out, err := json.Marshal(doc)
	if err != nil {
		return nil, err
	}
	d, err := contract.Parse(out)
	if err != nil {
		return nil, fmt.Errorf("%w: derived contract: %w", ErrContract, err)
	}
	return d, nil
}

// ReferenceSchema is the contract of validation-sample rows (id, prediction, label) in which
// the prediction is the one scored feature.
func (c *Contract) ReferenceSchema() *contract.Schema { return c.reference }

// PredictionSchema is the contract of prediction rows (id, prediction).
func (c *Contract) PredictionSchema() *contract.Schema { return c.predictions }

// LabelSchema is the contract of label rows (id, label).
func (c *Contract) LabelSchema() *contract.Schema { return c.labels }

// HigherIsBetter reports whether a larger value of metric is better (accuracy, f1).
func HigherIsBetter(metric string) bool {
	return metric == contract.MetricAccuracy || metric == contract.MetricF1
}

// Relative is a metric value relative to the reference value, as rollout gates compare it: 1 is
// as good as the reference, below 1 worse. For accuracy and f1 it is value/reference; for mae
// and rmse reference/value (an error twice the reference's is 0.5). A zero denominator gives 1
// when both are equal, else 0 (worse) or +Inf is capped at 1e9.
func Relative(metric string, value, reference float64) float64 {
	num, den := value, reference
	if !HigherIsBetter(metric) {
		num, den = reference, value
	}
	if den == 0 {
		if num == 0 {
			return 1
		}
		return 1e9
	}
	return num / den
}
