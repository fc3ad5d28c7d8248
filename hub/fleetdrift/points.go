package fleetdrift

import (
	"math"
	"sort"

	"github.com/driftline/driftline/shared/drift"
)

// Resolutions of a series point.
const (
	// ResolutionWindow is a point of one fleet window (Config.Window).
	ResolutionWindow = "window"
	// ResolutionCoarse is a point of one coarse step (Config.CoarseStep, an hour by default):
	// the merged profile of all windows of that step, scored as one.
	ResolutionCoarse = "coarse"
)

// FeaturePoint is one feature's verdict in a point. Scores that are not finite are reported
// as 0 with Skipped set, so the JSON always encodes.
type FeaturePoint struct {
	Method string  `json:"method"`
	Score  float64 `json:"score"`
	// ScoreType says what Score is: shared/drift.ScorePValue, ScoreStatistic or ScoreDistance.
	ScoreType   string   `json:"score_type,omitempty"`
	Threshold   float64  `json:"threshold"`
	Calibrated  bool     `json:"calibrated,omitempty"`
	Drift       bool     `json:"drift"`
	KS          *float64 `json:"ks,omitempty"`
	PSI         *float64 `json:"psi,omitempty"`
	Wasserstein *float64 `json:"wasserstein,omitempty"`
	Skipped     string   `json:"skipped,omitempty"`
}

// Point is the fleet's drift over one time span: the merged profile of every device profile
// received in [Start, End) for one model version, scored against the reference.
type Point struct {
	// Start and End bound the span, Unix milliseconds.
	Start int64 `json:"start"`
	End   int64 `json:"end"`
	// Resolution is ResolutionWindow or ResolutionCoarse.
	Resolution string `json:"resolution"`
	// Partial is true for the span still open (scored on what arrived so far).
	Partial bool `json:"partial,omitempty"`
	// Devices is the number of devices whose profiles were merged; Profiles the number of
	// profiles; Rows the rows they summarise.
	Devices  int    `json:"devices"`
	Profiles int    `json:"profiles"`
	Rows     uint64 `json:"rows"`
	// DatasetDrift and DriftShare are the merged profile's dataset verdict.
	DatasetDrift bool    `json:"dataset_drift"`
	DriftShare   float64 `json:"drift_share"`
	// Features is each feature's verdict on the merged profile.
	Features map[string]FeaturePoint `json:"features"`
}

func featurePoints(rep *drift.Report) map[string]FeaturePoint {
	out := make(map[string]FeaturePoint, len(rep.Features))
	for name, fr := range rep.Features {
		fp := FeaturePoint{Method: string(fr.Method), Score: fr.Score, ScoreType: fr.ScoreType, Threshold: fr.Threshold, Calibrated: fr.Calibrated,
			Drift: fr.Drift, KS: finitePtr(fr.KS), PSI: finitePtr(fr.PSI), Wasserstein: finitePtr(fr.Wasserstein), Skipped: fr.Skipped}
		if !finite(fp.Score) {
			fp.Score = 0
			if fp.Skipped == "" {
				fp.Skipped = "score is not finite"
			}
		}
		if !finite(fp.Threshold) {
			fp.Threshold = 0
		}
		out[name] = fp
	}
	return out
}

func finite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }

func finitePtr(p *float64) *float64 {
	if p == nil || !finite(*p) {
		return nil
	}
	v := *p
	return &v
}

func share(x float64) float64 {
	if !finite(x) {
		return 0
	}
	return x
}

// DevicePoint is one device window's verdict, compact: per feature the score and the drift
// flag, in the order of DeviceSeries.Features.
type DevicePoint struct {
	// TS is when the hub received the profile, Unix milliseconds.
	TS           int64     `json:"ts"`
	Rows         uint64    `json:"rows"`
	DatasetDrift bool      `json:"dataset_drift"`
	DriftShare   float64   `json:"drift_share"`
	Scores       []float64 `json:"scores"`
	// Drifted lists the indexes (into DeviceSeries.Features) of the features that drifted.
	Drifted []int `json:"drifted,omitempty"`
}

// compactPoint turns a report into a DevicePoint over the features named in order.
func compactPoint(ts int64, rows uint64, rep *drift.Report, features []string) DevicePoint {
	p := DevicePoint{TS: ts, Rows: rows, DatasetDrift: rep.DatasetDrift, DriftShare: share(rep.DriftShare), Scores: make([]float64, len(features))}
	for i, name := range features {
		fr, ok := rep.Features[name]
		if !ok || fr.Skipped != "" || !finite(fr.Score) {
			continue
		}
		p.Scores[i] = fr.Score
		if fr.Drift {
			p.Drifted = append(p.Drifted, i)
		}
	}
	return p
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
