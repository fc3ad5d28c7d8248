package reconcile

import (
	"errors"
	"fmt"
	"sort"

	"github.com/driftline/driftline/agent/devicedb"
	"github.com/driftline/driftline/shared/wire"
)

// ActiveModel is a running model version and what came with it: which version reports are
// made for, the training data's contract and reference profile to check live data against, and
// the output reference to check predictions against.
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
	// Output is the output reference (shared/outputs.Reference JSON), nil when none came.
	Output []byte
}

// ActiveModels returns every model with a running version, sorted by name. Safe for concurrent
// use, and cheap to call between streams: the bytes are read from the asset store once per
// digest and shared, so callers must not modify them.
func (rc *Reconciler) ActiveModels() ([]ActiveModel, error) {
	type ref struct {
		m                         ActiveModel
		contract, profile, output string
	}
	var refs []ref
	rc.mu.Lock()
	for n, r := range rc.models {
		if r.Current == 0 || r.ActiveVersion != r.Current {
			continue
		}
		refs = append(refs, ref{ActiveModel{Name: n, Version: r.Current, Dataset: r.Dataset, DatasetVersion: r.DatasetVersion,
			Path: rc.store.CurrentPath(n)}, r.ContractDigest, r.ProfileDigest, r.OutputDigest})
	}
	rc.mu.Unlock()
	sort.Slice(refs, func(i, j int) bool { return refs[i].m.Name < refs[j].m.Name })
	out := make([]ActiveModel, 0, len(refs))
	used := map[string]bool{}
	for _, r := range refs {
		for _, a := range []struct {
			digest string
			to     *[]byte
		}{{r.contract, &r.m.Contract}, {r.profile, &r.m.Profile}, {r.output, &r.m.Output}} {
			b, err := rc.assetBytes(a.digest)
			if err != nil {
				return nil, err
			}
			*a.to, used[a.digest] = b, true
		}
		out = append(out, r.m)
	}
	rc.assetMu.Lock()
	for d := range rc.assetCache {
		if !used[d] {
			delete(rc.assetCache, d)
		}
	}
	rc.assetMu.Unlock()
	return out, nil
}

// assetBytes returns the asset named digest (nil: none named, or not in the store), through
// the cache of the active models' assets.
func (rc *Reconciler) assetBytes(digest string) ([]byte, error) {
	if digest == "" {
		return nil, nil
	}
	rc.assetMu.Lock()
	b, ok := rc.assetCache[digest]
	rc.assetMu.Unlock()
	if ok {
		return b, nil
	}
	b, err := rc.assets.Get([]byte(digest))
	if errors.Is(err, devicedb.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read asset %s: %w", digest, err)
	}
	rc.assetMu.Lock()
	rc.assetCache[digest] = b
	rc.assetMu.Unlock()
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
