package fleetdrift

import (
	"fmt"
	"sort"

	"github.com/driftline/driftline/shared/drift"
	"github.com/driftline/driftline/shared/profile"
)

// DistributionQuantiles is the number of quantile points a numeric side carries: phi = 0, 0.05,
// ..., 1 (the minimum and maximum retained by the sketch at the ends).
const DistributionQuantiles = 21

// DistributionItems bounds the categorical values listed per side's top list; the answer lists
// the union of both sides' top values.
const DistributionItems = 20

// QuantilePoint is one point of a sketch's quantile function.
type QuantilePoint struct {
	P     float64 `json:"p"`
	Value float64 `json:"value"`
}

// ItemShare is one categorical value's counter and its share of the side's non-null values.
type ItemShare struct {
	Value string  `json:"value"`
	Count uint64  `json:"count"`
	Share float64 `json:"share"`
}

// DistributionSide is one profile's distribution of a feature, from its sketches only:
// quantiles (numeric) or frequent items (categorical).
type DistributionSide struct {
	// Rows is the profile's rows; Count the feature's non-null values; Nulls its nulls.
	Rows  uint64 `json:"rows"`
	Count uint64 `json:"count"`
	Nulls uint64 `json:"nulls"`
	// Quantiles (numeric): DistributionQuantiles points, p ascending; empty without values.
	Quantiles []QuantilePoint `json:"quantiles,omitempty"`
	// Items (categorical): the values of DistributionView.Items in that order; Other counts
	// the values not listed; every count may undercount by at most MaxError.
	Items    []ItemShare `json:"items,omitempty"`
	Other    uint64      `json:"other"`
	MaxError uint64      `json:"max_error"`
}

// CurrentSide is the fleet's current merged window: the open window when it holds profiles,
// else the last closed one.
type CurrentSide struct {
	DistributionSide
	Start    int64 `json:"start"`
	End      int64 `json:"end"`
	Partial  bool  `json:"partial"`
	Devices  int   `json:"devices"`
	Profiles int   `json:"profiles"`
	// Verdict is the feature's drift verdict on this window against the reference.
	Verdict *FeaturePoint `json:"verdict,omitempty"`
}

// DistributionView is the answer of GET /api/v1/drift/distribution: one feature's reference
// distribution beside the fleet's current one.
type DistributionView struct {
	Model   string   `json:"model"`
	Version int      `json:"version"`
	Feature string   `json:"feature"`
	Kind    string   `json:"kind"`
	Dataset *RefView `json:"dataset"`
	// Features lists the reference's scored features (to pick another), sorted.
	Features  []string         `json:"features"`
	Reference DistributionSide `json:"reference"`
	// Current is nil when this node has merged no profile of the version.
	Current *CurrentSide `json:"current"`
}

// Distribution returns a feature's reference and current fleet distributions for a model
// version. ErrNoReference when the version has no reference profile; ErrUnknownFeature when the
// reference does not score the feature.
func (s *Service) Distribution(key ModelKey, feature string) (DistributionView, error) {
	ref, err := s.reference(key)
	if err != nil {
		return DistributionView{}, err
	}
	scored := ref.scored()
	rc, ok := ref.prof.Column(feature)
	if !ok || !contains(scored, feature) {
		return DistributionView{}, fmt.Errorf("%w: %q in %s", ErrUnknownFeature, feature, key)
	}
	v := DistributionView{Model: key.Model, Version: key.Version, Feature: feature, Kind: rc.Kind().String(),
		Dataset: ref.view(), Features: scored}
	now := s.cfg.Now().UnixMilli()
	s.mu.Lock()
	defer s.mu.Unlock()
	var cur *bucket
	if f := s.fleets[key]; f != nil {
		cur = f.last
		if f.win != nil && f.win.prof != nil {
			cur = f.win
		}
	}
	var cc *profile.ColumnProfile
	if cur != nil && cur.prof != nil {
		cc, _ = cur.prof.Column(feature)
	}
	var items []string
	if rc.Kind() == profile.Categorical {
		items = unionItems(rc, cc)
	}
	v.Reference = side(ref.prof, rc, items)
	if cc != nil {
		v.Current = &CurrentSide{DistributionSide: side(cur.prof, cc, items), Start: cur.start, End: cur.end,
			Partial: cur.end > now, Devices: len(cur.devices), Profiles: cur.profiles}
		opts := ref.opts
		opts.Only = []string{feature}
		if rep, err := drift.Compare(ref.prof, cur.prof, opts); err == nil {
			if fp, ok := featurePoints(rep)[feature]; ok {
				v.Current.Verdict = &fp
			}
		}
	}
	return v, nil
}

// scored lists the reference's scored features, sorted: the contract's (opts.Only), else
// every column.
func (r *reference) scored() []string {
	names := append([]string(nil), r.opts.Only...)
	if len(names) == 0 {
		for _, c := range r.prof.Columns() {
			names = append(names, c.Name)
		}
	}
	sort.Strings(names)
	return names
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// unionItems returns the top DistributionItems values of each side, reference order first
// (largest reference count first), then the current side's other values.
func unionItems(rc, cc *profile.ColumnProfile) []string {
	seen := map[string]bool{}
	var out []string
	for _, c := range []*profile.ColumnProfile{rc, cc} {
		if c == nil || c.Frequent() == nil {
			continue
		}
		items := c.Frequent().Items()
		for _, it := range items[:min(len(items), DistributionItems)] {
			if !seen[it.Value] {
				seen[it.Value] = true
				out = append(out, it.Value)
			}
		}
	}
	return out
}

// side summarises one column of a profile from its sketches.
func side(p *profile.Profile, c *profile.ColumnProfile, items []string) DistributionSide {
	d := DistributionSide{Rows: p.Rows(), Count: c.Count(), Nulls: c.Nulls()}
	if q := c.Quantiles(); q != nil && q.N() > 0 {
		cdf := q.CDF()
		for i := 0; i < DistributionQuantiles; i++ {
			phi := float64(i) / float64(DistributionQuantiles-1)
			if x := cdf.Quantile(phi); finite(x) {
				d.Quantiles = append(d.Quantiles, QuantilePoint{P: phi, Value: x})
			}
		}
	}
	if fr := c.Frequent(); fr != nil {
		total, listed := fr.Total(), uint64(0)
		d.Items = make([]ItemShare, 0, len(items))
		for _, v := range items {
			n := fr.Count(v)
			listed += n
			is := ItemShare{Value: v, Count: n}
			if total > 0 {
				is.Share = float64(n) / float64(total)
			}
			d.Items = append(d.Items, is)
		}
		if total > listed {
			d.Other = total - listed
		}
		d.MaxError = fr.MaxError()
	}
	return d
}
