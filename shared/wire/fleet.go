package wire

import "fmt"

// FleetRollout is the retained PREFIX/fleet/rollouts/{rollout} message: a rollout's progress
// for dashboards, published by the hub on every transition.
type FleetRollout struct {
	// TS is when the hub published it, Unix milliseconds.
	TS int64 `json:"ts"`
	// RolloutID is the rollout, as in the topic.
	RolloutID string `json:"rollout_id"`
	// Model and Version are what the rollout deploys.
	Model   string `json:"model"`
	Version int    `json:"version"`
	// State is the rollout's state ("running", "paused", "done", "aborted", "rolled_back", ...).
	State string `json:"state"`
	// Wave is the current wave, from 1; Waves the number of waves.
	Wave  int `json:"wave"`
	Waves int `json:"waves"`
	// Reason says why the rollout last changed state (a failed gate, an operator).
	Reason string `json:"reason,omitempty"`
	// Devices counts the rollout's devices by per-device state.
	Devices map[State]int64 `json:"devices"`
	// Total is the number of devices the rollout selected.
	Total int64 `json:"total"`
	// Gates holds each gate's current value and threshold, by gate name.
	Gates map[string]Gate `json:"gates,omitempty"`
}

// Gate is one rollout gate's measured value against its threshold.
type Gate struct {
	Value     float64 `json:"value"`
	Threshold float64 `json:"threshold"`
	// Failed is true when Value exceeded Threshold.
	Failed bool `json:"failed"`
}

// Validate checks names, wave numbers, states and counts.
func (f FleetRollout) Validate() error {
	if err := checkTS("ts", f.TS); err != nil {
		return err
	}
	if err := ValidateName("rollout_id", f.RolloutID); err != nil {
		return err
	}
	if err := checkRef("model", f.Model, "version", f.Version, false); err != nil {
		return err
	}
	if err := checkToken("state", f.State); err != nil {
		return err
	}
	if f.Waves < 0 || f.Wave < 0 || f.Wave > f.Waves {
		return bad("wave", "wave %d of %d", f.Wave, f.Waves)
	}
	if err := checkText("reason", f.Reason); err != nil {
		return err
	}
	var sum int64
	for s, n := range f.Devices {
		if !s.Valid() {
			return bad("devices", "unknown state %.40q", s)
		}
		if n < 0 || n > f.Total {
			return bad("devices."+string(s), "must be within 0..total (%d), got %d", f.Total, n)
		}
		sum += n
	}
	if err := checkNonNeg("total", f.Total); err != nil {
		return err
	}
	if sum > f.Total {
		return bad("devices", "count %d above total %d", sum, f.Total)
	}
	if len(f.Gates) > MaxRules {
		return bad("gates", "%d gates, at most %d", len(f.Gates), MaxRules)
	}
	for name, g := range f.Gates {
		if err := checkToken("gates name", name); err != nil {
			return err
		}
		if err := checkFinite("gates."+name+".value", g.Value); err != nil {
			return err
		}
		if err := checkFinite("gates."+name+".threshold", g.Threshold); err != nil {
			return err
		}
	}
	return nil
}

// FleetDrift is the PREFIX/fleet/drift/{model} message: drift of a model version's fleet,
// computed by the hub from the merged device profiles against the reference.
type FleetDrift struct {
	// TS is when the hub computed it, Unix milliseconds.
	TS int64 `json:"ts"`
	// Model and Version are the model version, Model as in the topic.
	Model   string `json:"model"`
	Version int    `json:"version"`
	// Devices is the number of devices whose profiles were merged.
	Devices int64 `json:"devices"`
	// DriftingDevices is how many of them reported dataset drift in their latest window.
	DriftingDevices int64 `json:"drifting_devices"`
	// DatasetDrift is 1 when the merged profile shows dataset drift, else 0.
	DatasetDrift int `json:"dataset_drift"`
	// DriftShare is the share of features that drifted in the merged profile.
	DriftShare float64 `json:"drift_share"`
	// Features holds each feature's merged drift, by feature name.
	Features map[string]FleetFeature `json:"features"`
}

// FleetFeature is one feature's drift over a merged fleet profile.
type FleetFeature struct {
	Method string  `json:"method"`
	Score  float64 `json:"score"`
	// ScoreType is what Score is, as in DriftFeature: "p_value", "statistic" or "distance".
	ScoreType string  `json:"score_type,omitempty"`
	Threshold float64 `json:"threshold"`
	Drift     int     `json:"drift"`
	// Devices is the number of devices on which this feature drifted in their latest window.
	Devices int64 `json:"devices"`
}

// Validate checks names, counts, shares and feature entries.
func (f FleetDrift) Validate() error {
	if err := checkTS("ts", f.TS); err != nil {
		return err
	}
	if err := checkRef("model", f.Model, "version", f.Version, false); err != nil {
		return err
	}
	if err := checkNonNeg("devices", f.Devices); err != nil {
		return err
	}
	if f.DriftingDevices < 0 || f.DriftingDevices > f.Devices {
		return bad("drifting_devices", "must be within 0..devices (%d), got %d", f.Devices, f.DriftingDevices)
	}
	if err := checkFlag("dataset_drift", f.DatasetDrift); err != nil {
		return err
	}
	if err := checkShare("drift_share", f.DriftShare); err != nil {
		return err
	}
	if len(f.Features) > MaxFields {
		return bad("features", "%d features, at most %d", len(f.Features), MaxFields)
	}
	for name, ff := range f.Features {
		if err := ValidateName("feature", name); err != nil {
			return fmt.Errorf("features: %w", err)
		}
		if err := checkToken("features."+name+".method", ff.Method); err != nil {
			return err
		}
		if err := checkFinite("features."+name+".score", ff.Score); err != nil {
			return err
		}
		if err := checkFinite("features."+name+".threshold", ff.Threshold); err != nil {
			return err
		}
		if err := checkFlag("features."+name+".drift", ff.Drift); err != nil {
			return err
		}
		if ff.Devices < 0 || ff.Devices > f.Devices {
			return bad("features."+name+".devices", "must be within 0..devices, got %d", ff.Devices)
		}
	}
	return nil
}
