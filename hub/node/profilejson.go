package node

import (
	"encoding/json"
	"fmt"
	"math"

	"github.com/driftline/driftline/shared/drift"
	"github.com/driftline/driftline/shared/profile"
)

// maxJSONItems is how many frequent items per categorical column ProfileJSON lists.
const maxJSONItems = 20

// ProfileJSON renders an encoded profile as JSON for GET .../profile with Accept:
// application/json: the row count and per column its kind, counts, distinct estimate, numeric
// moments and quantiles, the most frequent categorical values, and any calibrated threshold.
// Statistics a column does not have (or that are not finite) are left out. Bytes that are not
// a profile give an error wrapping profile.ErrCorrupt or profile.ErrVersion.
func ProfileJSON(b []byte) ([]byte, error) {
	p, err := profile.Decode(b)
	if err != nil {
		return nil, fmt.Errorf("render profile: %w", err)
	}
	return json.Marshal(profileView(p))
}

// ProfileView is the JSON form of a profile.
type ProfileView struct {
	Rows    uint64       `json:"rows"`
	Columns []ColumnView `json:"columns"`
}

// ColumnView is the JSON form of one profiled column.
type ColumnView struct {
	Name     string   `json:"name"`
	Kind     string   `json:"kind"`
	Count    uint64   `json:"count"`
	Nulls    uint64   `json:"nulls"`
	Distinct uint64   `json:"distinct"`
	Min      *float64 `json:"min,omitempty"`
	Max      *float64 `json:"max,omitempty"`
	Mean     *float64 `json:"mean,omitempty"`
	StdDev   *float64 `json:"stddev,omitempty"`
	// Quantiles maps "p1", "p5", "p25", "p50", "p75", "p95", "p99" to the sketch's estimates.
	Quantiles map[string]float64 `json:"quantiles,omitempty"`
	// Frequent lists the most frequent values, largest first; each count may undercount by
	// at most FrequentMaxError.
	Frequent         []ItemView `json:"frequent,omitempty"`
	FrequentMaxError *uint64    `json:"frequent_max_error,omitempty"`
	// Threshold is the calibrated drift threshold, when the profile carries one.
	Threshold *ThresholdView `json:"threshold,omitempty"`
}

// ItemView is one frequent categorical value and its counter.
type ItemView struct {
	Value string `json:"value"`
	Count uint64 `json:"count"`
}

// ThresholdView is a calibrated threshold. On says what Value bounds: "statistic" (KS D, the
// chi-square statistic), "distance", or "p_value" (a profile calibrated before statistics,
// which drift scoring ignores for ks and chisquare).
type ThresholdView struct {
	Method string  `json:"method"`
	Value  float64 `json:"value"`
	On     string  `json:"on"`
}

func profileView(p *profile.Profile) ProfileView {
	v := ProfileView{Rows: p.Rows(), Columns: make([]ColumnView, 0, p.Len())}
	for i := 0; i < p.Len(); i++ {
		c := p.At(i)
		cv := ColumnView{Name: c.Name(), Kind: c.Kind().String(), Count: c.Count(), Nulls: c.Nulls(), Distinct: c.Distinct()}
		if th, ok := c.Threshold(); ok {
			cv.Threshold = &ThresholdView{Method: th.Method, Value: th.Value, On: thresholdOn(th)}
		}
		if q := c.Quantiles(); q != nil && c.Count() > 0 {
			cv.Min, cv.Max, cv.Mean, cv.StdDev = finite(c.Min()), finite(c.Max()), finite(c.Mean()), finite(c.StdDev())
			cdf := q.CDF()
			cv.Quantiles = map[string]float64{}
			for _, pq := range []struct {
				name string
				phi  float64
			}{{"p1", 0.01}, {"p5", 0.05}, {"p25", 0.25}, {"p50", 0.5}, {"p75", 0.75}, {"p95", 0.95}, {"p99", 0.99}} {
				if x := cdf.Quantile(pq.phi); !math.IsNaN(x) && !math.IsInf(x, 0) {
					cv.Quantiles[pq.name] = x
				}
			}
		}
		if fr := c.Frequent(); fr != nil {
			items := fr.Items()
			if len(items) > maxJSONItems {
				items = items[:maxJSONItems]
			}
			for _, it := range items {
				cv.Frequent = append(cv.Frequent, ItemView{Value: it.Value, Count: it.Count})
			}
			me := fr.MaxError()
			cv.FrequentMaxError = &me
		}
		v.Columns = append(v.Columns, cv)
	}
	return v
}

func finite(x float64) *float64 {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return nil
	}
	return &x
}

func thresholdOn(th profile.Threshold) string {
	switch {
	case th.OnStatistic:
		return drift.ScoreStatistic
	case drift.Method(th.Method).IsPValue():
		return drift.ScorePValue
	}
	return drift.ScoreDistance
}
