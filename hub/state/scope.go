package state

import (
	"errors"

	"github.com/dgraph-io/badger/v4"
)

// DeviceScope is what one device may read from the registry: the model versions it is told to
// run (its desired state) and the dataset versions they were trained on (contracts and reference
// profiles). A device token reads nothing else, over MQTT or HTTP.
type DeviceScope struct {
	// Models maps model name -> version -> manifest digest.
	Models map[string]map[int]string
	// Datasets maps dataset name -> versions.
	Datasets map[string]map[int]bool
	// outputs holds the output reference digests of the model versions.
	outputs map[string]bool
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
// out; an unknown device has an empty scope and ErrNotFound. It reads the device's spec and its
// desired model versions in one read transaction (every fetch request of a device reads its
// scope: each transaction of a badger read waits for the commits in flight, and under a wave
// start's writes those waits were most of a fetch's time), leaving out the device's status and
// the versions' tags, which the scope does not use.
func (r Reader) DeviceScope(id string) (DeviceScope, error) {
	sc := DeviceScope{Models: map[string]map[int]string{}, Datasets: map[string]map[int]bool{}}
	err := r.DB.View(func(txn *badger.Txn) error {
		var d deviceSpec // the spec's fields of either layout's dev/ document
		if err := getJSON(txn, nameKey(pDevice, id), &d); err != nil {
			if errors.Is(err, ErrNotFound) {
				return notFound("device %s", id)
			}
			return err
		}
		for name, want := range d.Desired {
			mv, err := getModelVersion(txn, name, want.Version)
			if errors.Is(err, ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			sc.add(name, mv)
		}
		return nil
	})
	return sc, err
}

// add puts model version mv of model name, and the dataset versions it was trained on, in sc.
func (sc *DeviceScope) add(name string, mv ModelVersion) {
	if sc.Models[name] == nil {
		sc.Models[name] = map[int]string{}
	}
	sc.Models[name][mv.Version] = mv.ManifestDigest
	if mv.Output != nil && mv.Output.Digest != "" {
		if sc.outputs == nil {
			sc.outputs = map[string]bool{}
		}
		sc.outputs[mv.Output.Digest] = true
	}
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

// HoldsObject reports whether the scope sc may read the registry object whose digest is digest
// and which the object index names ref (Reader.Object). The index holds one reference per
// digest, the last registered, while identical bytes may belong to several versions: every
// candidate the sample collector makes keeps its parent's contract, a `dataset push` may keep
// the contract or profile, a model may be pushed again. So the object is in the scope when ref
// is, or when any version of the scope holds an object with that digest (the bytes are the
// same: the digest is theirs). Checking ref alone took the contract away from every device of a
// model trained on the parent as soon as a candidate was made (docs/benchmarks.md, 10,000
// agents). The second check reads the scope's dataset versions, only when ref is not in it.
func (r Reader) HoldsObject(sc DeviceScope, digest string, ref ObjectRef) (bool, error) {
	switch ref.Kind {
	case ObjectManifest, ObjectOutput:
		// An output reference belongs to the model version, as its manifest does.
		if sc.Model(ref.Name, ref.Version) || sc.outputs[digest] {
			return true, nil
		}
		for _, vs := range sc.Models {
			for _, d := range vs {
				if d == digest {
					return true, nil
				}
			}
		}
	case ObjectContract, ObjectProfile:
		if sc.Dataset(ref.Name, ref.Version) {
			return true, nil
		}
		for name, vs := range sc.Datasets {
			for v := range vs {
				dv, err := r.DatasetVersion(name, v)
				if errors.Is(err, ErrNotFound) {
					continue
				}
				if err != nil {
					return false, err
				}
				if dv.ContractHash == digest || dv.ProfileDigest == digest {
					return true, nil
				}
			}
		}
	}
	return false, nil
}
