package fleetdrift

import (
	"errors"
	"sort"

	"github.com/driftline/driftline/hub/state"
	"github.com/driftline/driftline/shared/drift"
)

// RefView names the reference a model version is compared with.
type RefView struct {
	Dataset string `json:"dataset,omitempty"`
	Version int    `json:"version,omitempty"`
	// Output is the output reference's digest, for the fleet view of predictions.
	Output string `json:"output,omitempty"`
}

// FleetFeatureView is one feature of GET /api/v1/drift: the verdict on the merged profile of
// the latest closed window (or the open one before any closed), and the devices whose own
// latest window drifted on that feature.
type FleetFeatureView struct {
	FeaturePoint
	Devices []string `json:"devices"`
}

// FleetView is the answer of GET /api/v1/drift?model=M&version=V.
type FleetView struct {
	Model     string   `json:"model"`
	Version   int      `json:"version"`
	Reference *RefView `json:"reference"`
	// WindowSeconds and CoarseSeconds are the spans of Series and Coarse points.
	WindowSeconds float64 `json:"window_seconds"`
	CoarseSeconds float64 `json:"coarse_seconds"`
	// Versions are the versions of the model this node has profiles for, ascending.
	Versions []int `json:"versions"`
	// Devices, DatasetDrift and DriftShare summarise Latest (or Current before any window
	// closed): the devices merged and the merged profile's dataset verdict.
	Devices      int     `json:"devices"`
	DatasetDrift bool    `json:"dataset_drift"`
	DriftShare   float64 `json:"drift_share"`
	// Latest is the last closed window; Current the open one, scored on what arrived so far.
	Latest  *Point `json:"latest"`
	Current *Point `json:"current"`
	// Features are the per-feature verdicts of Latest (or Current) with the drifting devices.
	Features map[string]FleetFeatureView `json:"features"`
	// DriftingDevices are the devices whose latest window showed dataset drift on this model
	// version: those whose profiles this node scored, and those whose agents said so (device
	// health in the replicated state, which every node has).
	DriftingDevices []string `json:"drifting_devices"`
	// Series holds the closed windows (newest last) since the query's since; Coarse the closed
	// coarse steps.
	Series []Point `json:"series"`
	Coarse []Point `json:"coarse"`
}

// Fleet returns the fleet view of a model version, points ending after since (Unix ms). A
// version this node has no profiles for yields empty series; its reference is still named
// when one exists.
func (s *Service) Fleet(key ModelKey, since int64) (FleetView, error) {
	v := FleetView{Model: key.Model, Version: key.Version, WindowSeconds: s.cfg.Window.Seconds(), CoarseSeconds: s.cfg.CoarseStep.Seconds(),
		Features: map[string]FleetFeatureView{}, DriftingDevices: []string{}, Series: []Point{}, Coarse: []Point{}, Versions: []int{}}
	ref, err := s.reference(key)
	if err != nil && !errors.Is(err, ErrNoReference) {
		return v, err
	}
	if ref != nil {
		v.Reference = ref.view()
	}
	healthDrift, err := s.healthDrifting(key)
	if err != nil {
		return v, err
	}
	now := s.cfg.Now().UnixMilli()
	s.mu.Lock()
	defer s.mu.Unlock()
	drifting := map[string]bool{}
	for _, id := range healthDrift {
		drifting[id] = true
	}
	if f := s.fleets[key]; f != nil {
		for _, p := range f.fine {
			if p.End > since {
				v.Series = append(v.Series, p)
			}
		}
		for _, p := range f.coarse {
			if p.End > since {
				v.Coarse = append(v.Coarse, p)
			}
		}
		if n := len(f.fine); n > 0 {
			last := f.fine[n-1]
			v.Latest = &last
		}
		if f.win != nil {
			cur := s.score(f, f.win, ResolutionWindow)
			cur.Partial = true
			v.Current = &cur
		}
	}
	for k := range s.fleets {
		if k.Model == key.Model {
			v.Versions = append(v.Versions, k.Version)
		}
	}
	sort.Ints(v.Versions)
	base := v.Latest
	if base == nil {
		base = v.Current
	}
	if base != nil {
		v.Devices, v.DatasetDrift, v.DriftShare = base.Devices, base.DatasetDrift, base.DriftShare
	}
	perFeature := map[string][]string{}
	recent := now - s.cfg.FineRetention.Milliseconds()
	for id, d := range s.devices {
		dm := d.models[key]
		if dm == nil || dm.latest == nil || dm.latestTS < recent {
			continue
		}
		if dm.latest.DatasetDrift {
			drifting[id] = true
		}
		for name, fr := range dm.latest.Features {
			if fr.Drift {
				perFeature[name] = append(perFeature[name], id)
			}
		}
	}
	if base != nil {
		for name, fp := range base.Features {
			ids := perFeature[name]
			sort.Strings(ids)
			if ids == nil {
				ids = []string{}
			}
			v.Features[name] = FleetFeatureView{FeaturePoint: fp, Devices: ids}
		}
	}
	v.DriftingDevices = sortedKeys(drifting)
	return v, nil
}

// LatestVersion returns the version of model whose profiles this node received last, or
// false when it has none.
func (s *Service) LatestVersion(model string) (int, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	best, at := 0, int64(-1)
	for k, f := range s.fleets {
		if k.Model == model && (f.lastUpdate > at || (f.lastUpdate == at && k.Version > best)) {
			best, at = k.Version, f.lastUpdate
		}
	}
	return best, at >= 0
}

// healthDrifting lists the devices whose replicated health says their latest window on this
// model version drifted.
func (s *Service) healthDrifting(key ModelKey) ([]string, error) {
	var out []string
	cursor := ""
	for {
		page, err := s.cfg.Registry.Devices(nil, cursor, state.MaxLimit)
		if err != nil {
			return nil, err
		}
		for _, d := range page.Items {
			if s.cfg.Predictions {
				if o := d.Outputs; o != nil && o.Model == key.Model && o.Version == key.Version && o.PredictionWindows > 0 && o.PredictionDrift {
					out = append(out, d.ID)
				}
			} else if h := d.Health; h != nil && h.Model == key.Model && h.Version == key.Version && h.DatasetDrift {
				out = append(out, d.ID)
			}
		}
		if page.NextCursor == nil || *page.NextCursor == "" {
			return out, nil
		}
		cursor = *page.NextCursor
	}
}

// DeviceLatest is a device's latest window on one model version, in full.
type DeviceLatest struct {
	TS           int64                   `json:"ts"`
	Rows         uint64                  `json:"rows"`
	DatasetDrift bool                    `json:"dataset_drift"`
	DriftShare   float64                 `json:"drift_share"`
	Features     map[string]FeaturePoint `json:"features"`
}

// DeviceModelView is a device's drift on one model version: the latest window and the compact
// history (scores in the order of Features, oldest first).
type DeviceModelView struct {
	Model     string        `json:"model"`
	Version   int           `json:"version"`
	Reference *RefView      `json:"reference,omitempty"`
	Latest    DeviceLatest  `json:"latest"`
	Features  []string      `json:"features"`
	History   []DevicePoint `json:"history"`
}

// DeviceView is the answer of GET /api/v1/devices/{id}/drift.
type DeviceView struct {
	Device string `json:"device"`
	// Health is the agent's own latest drift and validation summary (replicated state).
	Health *state.HealthSummary `json:"health,omitempty"`
	// Models holds the device's own profiles compared with each reference, as this node saw
	// them; empty when it saw none.
	Models []DeviceModelView `json:"models"`
}

// Device returns a device's drift view (state.ErrNotFound for an unknown device).
func (s *Service) Device(id string) (DeviceView, error) {
	dev, err := s.cfg.Registry.Device(id)
	if err != nil {
		return DeviceView{}, err
	}
	v := DeviceView{Device: id, Health: dev.Health, Models: []DeviceModelView{}}
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.devices[id]
	if d == nil {
		return v, nil
	}
	for key, dm := range d.models {
		mv := DeviceModelView{Model: key.Model, Version: key.Version, Features: dm.features,
			History: append([]DevicePoint(nil), dm.history...), Latest: deviceLatest(dm.latestTS, dm.rows, dm.latest)}
		if e := s.refs[key]; e != nil && e.ref != nil {
			mv.Reference = e.ref.view()
		}
		v.Models = append(v.Models, mv)
	}
	sort.Slice(v.Models, func(i, j int) bool {
		a, b := v.Models[i], v.Models[j]
		return a.Model < b.Model || (a.Model == b.Model && a.Version < b.Version)
	})
	return v, nil
}

func deviceLatest(ts int64, rows uint64, rep *drift.Report) DeviceLatest {
	return DeviceLatest{TS: ts, Rows: rows, DatasetDrift: rep.DatasetDrift, DriftShare: share(rep.DriftShare), Features: featurePoints(rep)}
}
