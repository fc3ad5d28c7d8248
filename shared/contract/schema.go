package contract

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"regexp"
)

// Field types of the Frictionless Table Schema that Driftline supports.
const (
	TypeString   = "string"
	TypeNumber   = "number"
	TypeInteger  = "integer"
	TypeBoolean  = "boolean"
	TypeDatetime = "datetime"
	TypeDate     = "date"
)

// Role says what a field is to the model. The zero Role is never stored: Parse fills in RoleFeature.
type Role string

// Roles of a field (x-driftline.role).
const (
	// RoleFeature is a model input; drift is computed for it.
	RoleFeature Role = "feature"
	// RolePrediction is a model output carried in the data.
	RolePrediction Role = "prediction"
	// RoleLabel is the ground truth, often unknown at the edge.
	RoleLabel Role = "label"
)

// Drift method names accepted in x-driftline.drift.method.
const (
	MethodKS            = "ks"
	MethodWasserstein   = "wasserstein"
	MethodPSI           = "psi"
	MethodChiSquare     = "chisquare"
	MethodJensenShannon = "jensenshannon"
)

// Schema is a parsed, checked data contract: a Frictionless Table Schema with Driftline's
// extensions. A Schema returned by Parse is immutable and safe for concurrent use; build it only
// through Parse.
type Schema struct {
	// Fields in column order. Rows are []Value indexed like Fields.
	Fields []Field
	// MissingValues are the strings read as null (default [""]). A field may override them.
	MissingValues []string
	// PrimaryKey names the key fields; they are implied required, and the key is unique.
	PrimaryKey []string
	// Driftline holds the schema-level x-driftline extension with defaults filled in.
	Driftline Extension

	index map[string]int
	pk    []int
}

// Field is one column of the contract.
type Field struct {
	Name        string
	Title       string
	Description string
	// Type is one of the Type* constants (default "string").
	Type string
	// Format is the Table Schema format ("default" when absent). For date and datetime it is
	// "default", "any" or a strftime pattern such as "%d/%m/%Y %H:%M".
	Format string
	// Role is the x-driftline role, RoleFeature when absent.
	Role        Role
	Constraints Constraints
	// MissingValues overrides Schema.MissingValues when non-nil.
	MissingValues []string
	// TrueValues and FalseValues are the boolean spellings (Table Schema defaults when absent).
	TrueValues  []string
	FalseValues []string
	// DecimalChar and GroupChar are the number separators ("." and none by default).
	DecimalChar string
	GroupChar   string
	// BareNumber false lets numbers carry leading and trailing non-numeric text ("€ 12", "95%").
	BareNumber bool
	// Drift is the per-field x-driftline.drift setting, nil when absent.
	Drift *DriftSpec

	c compiled
}

// Constraints are a field's Table Schema constraints. Bound and enum values are kept as written
// in the contract (compact JSON) so the contract re-serialises unchanged; the compiled, typed
// form is internal to the Validator.
type Constraints struct {
	Required         bool
	Unique           bool
	Minimum          json.RawMessage
	Maximum          json.RawMessage
	ExclusiveMinimum json.RawMessage
	ExclusiveMaximum json.RawMessage
	// MinLength and MaxLength count Unicode code points; -1 when absent.
	MinLength int
	MaxLength int
	// Pattern is the regular expression as written; it must match the whole value.
	Pattern string
	Enum    []json.RawMessage
}

// DriftSpec is a field's x-driftline.drift: the method, its threshold and calibration.
type DriftSpec struct {
	// Method is one of the Method* constants, or "" for the default choice.
	Method string `json:"method,omitempty"`
	// Threshold is the p-value (ks, chisquare) or distance (others) threshold; nil for the default.
	Threshold *float64 `json:"threshold,omitempty"`
	// Calibrate is the calibration window in rows; 0 means the schema's setting.
	Calibrate int `json:"calibrate,omitempty"`
}

// Extension is the schema-level x-driftline object with defaults filled in.
type Extension struct {
	// Mostly is the share (0..1) of rows of a window that must pass; default 1.
	Mostly float64 `json:"mostly"`
	// Window is the profiling window; zero parts mean "use the agent's configuration".
	Window Window `json:"window"`
	// Drift is the schema-level drift calibration.
	Drift SchemaDrift `json:"drift"`
	// Task is what an output contract's prediction is: TaskClassification or TaskRegression
	// ("" on an input contract, or to decide from the prediction field's type).
	Task string `json:"task,omitempty"`
	// Metric is the performance metric an output contract is judged by (Metric* constants;
	// "" for the task's default: accuracy, rmse).
	Metric string `json:"metric,omitempty"`
	// Collect allows the agent to send sampled rows of drifted windows to the hub (opt-in:
	// without it no row of this dataset leaves the device).
	Collect bool `json:"collect,omitempty"`
}

// Tasks of an output contract (x-driftline.task).
const (
	TaskClassification = "classification"
	TaskRegression     = "regression"
)

// Performance metrics of an output contract (x-driftline.metric).
const (
	MetricAccuracy = "accuracy"
	MetricF1       = "f1"
	MetricMAE      = "mae"
	MetricRMSE     = "rmse"
)

// Window says when a window closes: after Rows rows or Seconds seconds, whichever comes first.
type Window struct {
	Rows    int     `json:"rows,omitempty"`
	Seconds float64 `json:"seconds,omitempty"`
}

// SchemaDrift is x-driftline.drift at schema level.
type SchemaDrift struct {
	// Calibrate is the calibration window in rows; 0 disables calibration.
	Calibrate int `json:"calibrate,omitempty"`
	// Factor is the number of standard deviations above the mean calibrated score; default 3.
	Factor float64 `json:"factor"`
}

// compiled is the checked, typed form of a field's settings used on the hot path.
type compiled struct {
	pattern  *regexp.Regexp
	bounds   [4]*Value // minimum, maximum, exclusiveMinimum, exclusiveMaximum
	enum     []Value
	missing  []string
	trueV    []string
	falseV   []string
	timeFmt  timeFormat
	required bool
	unique   bool
}

// Index returns the position of the field called name, or -1.
func (s *Schema) Index(name string) int {
	if i, ok := s.index[name]; ok {
		return i
	}
	return -1
}

// IndexBytes is Index for a name held in bytes (a key read from input), without converting it.
func (s *Schema) IndexBytes(name []byte) int {
	if i, ok := s.index[string(name)]; ok {
		return i
	}
	return -1
}

// Passes reports whether valid rows out of total meet the schema's "mostly" share. An empty
// window passes.
func (s *Schema) Passes(valid, total int64) bool {
	if total == 0 {
		return true
	}
	return float64(valid) >= s.Driftline.Mostly*float64(total)
}

// MarshalJSON writes the contract in canonical form: Table Schema keys in a fixed order, defaults
// written out, constraint values as they were given. Parse accepts the output and yields an
// equal Schema.
func (s *Schema) MarshalJSON() ([]byte, error) {
	return json.Marshal(toWire(s))
}

// Digest is "sha256:" followed by the hex sha256 of the canonical JSON (MarshalJSON). Two
// contracts that differ only in key order, whitespace or spelled-out defaults share a digest.
func (s *Schema) Digest() string {
	b, err := s.MarshalJSON()
	if err != nil {
		// Every part of a parsed Schema is marshalable; this is a programming error.
		panic("contract: marshal parsed schema: " + err.Error())
	}
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}
