package fleetdrift

import (
	"sort"
)

// MaxHeatmapDevices bounds the rows of a heatmap answer; Total still counts every device.
const MaxHeatmapDevices = 500

// HeatmapCell is one device's latest verdict on one feature. Relative is Score/Threshold (1 is
// the drift line), 0 when the threshold is not positive, the ratio not finite or the feature
// was skipped.
type HeatmapCell struct {
	Score     float64 `json:"score"`
	Threshold float64 `json:"threshold"`
	Relative  float64 `json:"relative"`
	Drift     bool    `json:"drift"`
	Method    string  `json:"method"`
	Skipped   string  `json:"skipped,omitempty"`
}

// HeatmapRow is one device's latest window on a model version: one cell per HeatmapView
// feature, in that order, nil where the device's report has no such feature.
type HeatmapRow struct {
	Device       string         `json:"device"`
	TS           int64          `json:"ts"`
	Rows         uint64         `json:"rows"`
	DatasetDrift bool           `json:"dataset_drift"`
	DriftShare   float64        `json:"drift_share"`
	Cells        []*HeatmapCell `json:"cells"`
}

// HeatmapView is the answer of GET /api/v1/drift/heatmap: devices x features, each cell the
// device's latest score for the feature against its threshold.
type HeatmapView struct {
	Model   string `json:"model"`
	Version int    `json:"version"`
	// Features are the column names, sorted.
	Features []string `json:"features"`
	// Devices are the rows: devices whose latest window on this version is within the fine
	// retention, dataset drift first, then by drift share (highest first), then by id; at most
	// MaxHeatmapDevices. Total counts them all.
	Devices []HeatmapRow `json:"devices"`
	Total   int          `json:"total"`
}

// Heatmap returns the latest per-feature score of every device this node scored on a model
// version recently (within FineRetention), as one table.
func (s *Service) Heatmap(key ModelKey) HeatmapView {
	v := HeatmapView{Model: key.Model, Version: key.Version, Features: []string{}, Devices: []HeatmapRow{}}
	recent := s.cfg.Now().UnixMilli() - s.cfg.FineRetention.Milliseconds()
	s.mu.Lock()
	defer s.mu.Unlock()
	type entry struct {
		id string
		dm *deviceModel
	}
	var all []entry
	names := map[string]struct{}{}
	for id, d := range s.devices {
		dm := d.models[key]
		if dm == nil || dm.latest == nil || dm.latestTS < recent {
			continue
		}
		all = append(all, entry{id, dm})
		for name := range dm.latest.Features {
			names[name] = struct{}{}
		}
	}
	sort.Slice(all, func(i, j int) bool {
		a, b := all[i].dm.latest, all[j].dm.latest
		if a.DatasetDrift != b.DatasetDrift {
			return a.DatasetDrift
		}
		if sa, sb := share(a.DriftShare), share(b.DriftShare); sa != sb {
			return sa > sb
		}
		return all[i].id < all[j].id
	})
	v.Total = len(all)
	v.Features = sortedKeys(names)
	for _, e := range all[:min(len(all), MaxHeatmapDevices)] {
		fps := featurePoints(e.dm.latest)
		row := HeatmapRow{Device: e.id, TS: e.dm.latestTS, Rows: e.dm.rows, DatasetDrift: e.dm.latest.DatasetDrift,
			DriftShare: share(e.dm.latest.DriftShare), Cells: make([]*HeatmapCell, len(v.Features))}
		for i, name := range v.Features {
			fp, ok := fps[name]
			if !ok {
				continue
			}
			c := &HeatmapCell{Score: fp.Score, Threshold: fp.Threshold, Drift: fp.Drift, Method: fp.Method, Skipped: fp.Skipped}
			if rel := fp.Score / fp.Threshold; fp.Skipped == "" && fp.Threshold > 0 && finite(rel) {
				c.Relative = rel
			}
			row.Cells[i] = c
		}
		v.Devices = append(v.Devices, row)
	}
	return v
}
