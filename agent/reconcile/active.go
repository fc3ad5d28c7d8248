package reconcile

import (
	"errors"
	"fmt"
	"sort"

	"github.com/driftline/driftline/agent/devicedb"
	"github.com/driftline/driftline/shared/wire"
)

// ActiveModel is what the data pipeline needs about a running model version: which version
// reports are made for, and the training data's contract and reference profile to check live
// data against.
type ActiveModel struct {
	// Name and Version identify the running model version.
	Name    string
	Version int
	// Dataset and DatasetVersion name the training dataset version (empty when the desired
	// state named none).
	Dataset        string
	DatasetVersion int
	// Path is MODELDIR/NAME/current/model, the stable path of the running file.
	Path string
	// Contract is the Table Schema JSON, nil when the model came without one.
	Contract []byte
	// Profile is the encoded reference profile (shared/profile), nil when none came.
	Profile []byte
}

// ActiveModels returns every model with a running version, sorted by name. Safe for
// concurrent use; the bytes are copies the caller owns.
func (rc *Reconciler) ActiveModels() ([]ActiveModel, error) {
	type ref struct {
		m                 ActiveModel
		contract, profile string
	}
	var refs []ref
	rc.mu.Lock()
	for n, r := range rc.models {
		if r.Current == 0 || r.ActiveVersion != r.Current {
			continue
		}
		refs = append(refs, ref{ActiveModel{Name: n, Version: r.Current, Dataset: r.Dataset, DatasetVersion: r.DatasetVersion,
			Path: rc.store.CurrentPath(n)}, r.ContractDigest, r.ProfileDigest})
	}
	rc.mu.Unlock()
	sort.Slice(refs, func(i, j int) bool { return refs[i].m.Name < refs[j].m.Name })
	out := make([]ActiveModel, 0, len(refs))
	for _, r := range refs {
		var err error
		if r.m.Contract, err = rc.assetBytes(r.contract); err != nil {
			return nil, err
		}
		if r.m.Profile, err = rc.assetBytes(r.profile); err != nil {
			return nil, err
		}
		out = append(out, r.m)
	}
	return out, nil
}

func (rc *Reconciler) assetBytes(digest string) ([]byte, error) {
	if digest == "" {
		return nil, nil
	}
	b, err := rc.assets.Get([]byte(digest))
	if errors.Is(err, devicedb.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read asset %s: %w", digest, err)
	}
	return b, nil
}

// ActiveNames lists the running models as NAME@VERSION.
func (rc *Reconciler) ActiveNames() []string {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	out := []string{}
	for n, r := range rc.models {
		if r.Current > 0 && len(out) < wire.MaxModels {
			out = append(out, fmt.Sprintf("%s@%d", n, r.Current))
		}
	}
	sort.Strings(out)
	return out
}
