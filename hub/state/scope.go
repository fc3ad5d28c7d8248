package state

import "errors"

// DeviceScope is what one device may read from the registry: the model versions it is told to
// run (its desired state) and the dataset versions they were trained on (contracts and reference
// profiles). A device token reads nothing else, over MQTT or HTTP.
type DeviceScope struct {
	// Models maps model name -> version -> manifest digest.
	Models map[string]map[int]string
	// Datasets maps dataset name -> versions.
	Datasets map[string]map[int]bool
}

// Model reports whether the scope holds model name at version v.
func (sc DeviceScope) Model(name string, v int) bool {
	_, ok := sc.Models[name][v]
	return ok
}

// ModelName reports whether the scope holds any version of model name.
func (sc DeviceScope) ModelName(name string) bool { return len(sc.Models[name]) > 0 }

// Dataset reports whether the scope holds dataset name at version v.
func (sc DeviceScope) Dataset(name string, v int) bool { return sc.Datasets[name][v] }

// Manifests lists the manifest digests of the scope's model versions.
func (sc DeviceScope) Manifests() []string {
	var out []string
	for _, vs := range sc.Models {
		for _, d := range vs {
			if d != "" {
				out = append(out, d)
			}
		}
	}
	return out
}

// DeviceScope returns what device id may read. A desired version that no longer exists is left
// out; an unknown device has an empty scope and ErrNotFound.
func (r Reader) DeviceScope(id string) (DeviceScope, error) {
	sc := DeviceScope{Models: map[string]map[int]string{}, Datasets: map[string]map[int]bool{}}
	d, err := r.Device(id)
	if err != nil {
		return sc, err
	}
	for name, want := range d.Desired {
		mv, err := r.ModelVersion(name, want.Version)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return sc, err
		}
		if sc.Models[name] == nil {
			sc.Models[name] = map[int]string{}
		}
		sc.Models[name][mv.Version] = mv.ManifestDigest
		for _, t := range mv.TrainedOn {
			if t.Dataset == "" {
				continue
			}
			if sc.Datasets[t.Dataset] == nil {
				sc.Datasets[t.Dataset] = map[int]bool{}
			}
			sc.Datasets[t.Dataset][t.Version] = true
		}
	}
	return sc, nil
}
