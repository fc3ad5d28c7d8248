package wire

import "fmt"

// Window identifies the window a report covers. Windows are numbered from 1 per agent start
// and close after a number of rows or seconds, whichever comes first.
type Window struct {
	// Index is the window's sequence number, from 1.
	Index int64 `json:"window"`
	// WindowStart is when the window's first row arrived, Unix milliseconds.
	WindowStart int64 `json:"window_start"`
	// WindowEnd is when the window closed, Unix milliseconds; not before WindowStart.
	WindowEnd int64 `json:"window_end"`
}

// Validate checks that the window number is positive and the bounds are ordered.
func (w Window) Validate() error {
	if w.Index < 1 {
		return bad("window", "must be at least 1, got %d", w.Index)
	}
	if err := checkTS("window_start", w.WindowStart); err != nil {
		return err
	}
	if w.WindowEnd < w.WindowStart {
		return bad("window_end", "%d is before window_start %d", w.WindowEnd, w.WindowStart)
	}
	return nil
}

// ModelRef names the model version (and its training dataset version) a report was made for.
// Model is empty when no model is active yet.
type ModelRef struct {
	// Model is the active model's name.
	Model string `json:"model,omitempty"`
	// Version is the active model's version, from 1; 0 when Model is empty.
	Version int `json:"version,omitempty"`
	// Dataset is the dataset the model was trained on, whose contract and profile apply.
	Dataset string `json:"dataset,omitempty"`
	// DatasetVersion is that dataset's version.
	DatasetVersion int `json:"dataset_version,omitempty"`
}

// Validate checks that a named model has a positive version, and likewise for the dataset.
func (m ModelRef) Validate() error {
	if err := checkRef("model", m.Model, "version", m.Version, true); err != nil {
		return err
	}
	return checkRef("dataset", m.Dataset, "dataset_version", m.DatasetVersion, true)
}

func checkRef(nameField, name, versionField string, version int, optional bool) error {
	if name == "" {
		if !optional {
			return bad(nameField, "required")
		}
		if version != 0 {
			return bad(versionField, "set without %s", nameField)
		}
		return nil
	}
	if err := ValidateName(nameField, name); err != nil {
		return err
	}
	if version < 1 {
		return bad(versionField, "must be at least 1, got %d", version)
	}
	return nil
}

// checkReportHead validates the parts every report starts with, in order: the header, the
// report sequence when the report has one (seq not nil), the window and the model reference.
func checkReportHead(h Header, seq *ReportSeq, w Window, m ModelRef) error {
	if err := h.Validate(); err != nil {
		return err
	}
	if seq != nil {
		if err := seq.Validate(); err != nil {
			return err
		}
	}
	if err := w.Validate(); err != nil {
		return err
	}
	return m.Validate()
}

// checkModelReport is checkReportHead for a report made for a model version: it also requires
// the model reference to name a model.
func checkModelReport(h Header, seq *ReportSeq, w Window, m ModelRef) error {
	if err := checkReportHead(h, seq, w, m); err != nil {
		return err
	}
	if m.Model == "" {
		return bad("model", "required")
	}
	return nil
}

// Validation is the PREFIX/dev/{id}/validation message: one window's validation counts.
type Validation struct {
	Header
	Window
	ModelRef
	// ReportSeq numbers the report for the hub's acknowledgement (zero from older agents).
	ReportSeq
	// Rows is the number of rows checked: Valid + Invalid.
	Rows int64 `json:"rows"`
	// Valid is the number of rows that passed every rule.
	Valid int64 `json:"valid"`
	// Invalid is the number of rows that failed at least one rule (all quarantined).
	Invalid int64 `json:"invalid"`
	// ValidShare is Valid / Rows (1 when Rows is 0).
	ValidShare float64 `json:"valid_share"`
	// Violations counts failed checks by field, then by rule ("required", "maximum", "type", ...).
	// A row can fail several, so the counts can add up to more than Invalid.
	Violations map[string]map[string]int64 `json:"violations"`
	// Quarantined is the number of rows held in quarantine after this window.
	Quarantined int64 `json:"quarantined"`
	// QuarantineEvicted counts quarantined rows evicted for space since start.
	QuarantineEvicted int64 `json:"quarantine_evicted"`
}

// Validate checks that counts are consistent and not negative, and the violation table's size.
func (v Validation) Validate() error {
	if err := checkReportHead(v.Header, &v.ReportSeq, v.Window, v.ModelRef); err != nil {
		return err
	}
	for _, c := range []struct {
		f string
		n int64
	}{{"rows", v.Rows}, {"valid", v.Valid}, {"invalid", v.Invalid}, {"quarantined", v.Quarantined}, {"quarantine_evicted", v.QuarantineEvicted}} {
		if err := checkNonNeg(c.f, c.n); err != nil {
			return err
		}
	}
	if v.Valid+v.Invalid != v.Rows {
		return bad("rows", "%d is not valid %d + invalid %d", v.Rows, v.Valid, v.Invalid)
	}
	if err := checkShare("valid_share", v.ValidShare); err != nil {
		return err
	}
	if len(v.Violations) > MaxFields {
		return bad("violations", "%d fields, at most %d", len(v.Violations), MaxFields)
	}
	for field, rules := range v.Violations {
		if field == "" || len(field) > MaxNameLen {
			return bad("violations", "field name of %d bytes", len(field))
		}
		if len(rules) > MaxRules {
			return bad("violations."+field, "%d rules, at most %d", len(rules), MaxRules)
		}
		for rule, n := range rules {
			if err := checkToken(fmt.Sprintf("violations.%s rule", field), rule); err != nil {
				return err
			}
			if n < 1 {
				return bad("violations."+field+"."+rule, "count must be positive, got %d", n)
			}
		}
	}
	return nil
}

// DecodeValidation parses and validates a validation payload.
func DecodeValidation(b []byte) (Validation, error) { return decode[Validation](b) }

// Drift is the PREFIX/dev/{id}/drift message: one window's dataset-level drift against the
// reference profile of the active model's training data.
type Drift struct {
	Header
	Window
	ModelRef
	// ReportSeq numbers the report for the hub's acknowledgement (zero from older agents).
	ReportSeq
	// Rows is the number of valid rows the window's profile holds.
	Rows int64 `json:"rows"`
	// DatasetDrift is 1 when DriftShare reached the dataset threshold, else 0 (a number, so
	// dashboards can graph it).
	DatasetDrift int `json:"dataset_drift"`
	// DriftShare is DriftedFeatures / Features.
	DriftShare float64 `json:"drift_share"`
	// Features is the number of features checked.
	Features int `json:"features"`
	// DriftedFeatures is the number of features that drifted.
	DriftedFeatures int `json:"drifted_features"`
	// Drifted names the drifted features.
	Drifted []string `json:"drifted,omitempty"`
}

// Validate checks the model reference (required), ranges and feature counts.
func (d Drift) Validate() error {
	if err := checkModelReport(d.Header, &d.ReportSeq, d.Window, d.ModelRef); err != nil {
		return err
	}
	if err := checkNonNeg("rows", d.Rows); err != nil {
		return err
	}
	if err := checkFlag("dataset_drift", d.DatasetDrift); err != nil {
		return err
	}
	if err := checkShare("drift_share", d.DriftShare); err != nil {
		return err
	}
	if d.Features < 0 || d.Features > MaxFields {
		return bad("features", "must be within 0..%d, got %d", MaxFields, d.Features)
	}
	if d.DriftedFeatures < 0 || d.DriftedFeatures > d.Features {
		return bad("drifted_features", "must be within 0..features (%d), got %d", d.Features, d.DriftedFeatures)
	}
	if len(d.Drifted) > d.DriftedFeatures {
		return bad("drifted", "%d names for %d drifted features", len(d.Drifted), d.DriftedFeatures)
	}
	for _, f := range d.Drifted {
		if err := ValidateName("drifted", f); err != nil {
			return err
		}
	}
	return nil
}

// DecodeDrift parses and validates a drift payload.
func DecodeDrift(b []byte) (Drift, error) { return decode[Drift](b) }

// DriftFeature is the PREFIX/dev/{id}/drift/{feature} message: one feature's drift in one
// window, flat so that a dashboard graphs score against threshold.
type DriftFeature struct {
	Header
	Window
	ModelRef
	// Feature is the feature's name, as in the topic.
	Feature string `json:"feature"`
	// Method is the test that decides drift: "ks", "wasserstein", "chi2", "jensen_shannon",
	// "psi", ... (lowercase, digits and '_').
	Method string `json:"method"`
	// Score is what Threshold applies to; ScoreType says which.
	Score float64 `json:"score"`
	// ScoreType is "p_value" (drift when Score < Threshold), "statistic" (a p-value test's
	// statistic, KS D or chi-square, when its threshold was calibrated) or "distance" (both
	// drift when Score > Threshold); empty from agents that predate it (then p-value for ks
	// and chi-square methods, distance otherwise).
	ScoreType string `json:"score_type,omitempty"`
	// Threshold is the fixed or calibrated threshold the score was compared with.
	Threshold float64 `json:"threshold"`
	// Drift is 1 when the feature drifted, else 0.
	Drift int `json:"drift"`
	// Calibrated is true when Threshold came from calibration on the reference.
	Calibrated bool `json:"calibrated,omitempty"`
	// Rows is the number of non-null values in the window.
	Rows int64 `json:"rows"`
	// PSI is the population stability index (numeric features).
	PSI *float64 `json:"psi,omitempty"`
	// KS is the Kolmogorov-Smirnov statistic D (numeric features).
	KS *float64 `json:"ks,omitempty"`
	// PValue is the test's p-value where the method has one.
	PValue *float64 `json:"p_value,omitempty"`
	// Wasserstein is the W1 distance divided by the reference's standard deviation.
	Wasserstein *float64 `json:"wasserstein,omitempty"`
	// JensenShannon is the Jensen-Shannon distance (categorical features).
	JensenShannon *float64 `json:"jensen_shannon,omitempty"`
}

// Validate checks the feature name, method, model reference (required) and that the numbers
// are finite.
func (d DriftFeature) Validate() error {
	if err := checkModelReport(d.Header, nil, d.Window, d.ModelRef); err != nil {
		return err
	}
	if err := ValidateName("feature", d.Feature); err != nil {
		return err
	}
	if err := checkToken("method", d.Method); err != nil {
		return err
	}
	if err := checkFlag("drift", d.Drift); err != nil {
		return err
	}
	if err := checkNonNeg("rows", d.Rows); err != nil {
		return err
	}
	for _, c := range []struct {
		f string
		v *float64
	}{{"score", &d.Score}, {"threshold", &d.Threshold}, {"psi", d.PSI}, {"ks", d.KS}, {"p_value", d.PValue}, {"wasserstein", d.Wasserstein}, {"jensen_shannon", d.JensenShannon}} {
		if err := checkOptFinite(c.f, c.v); err != nil {
			return err
		}
	}
	return nil
}
