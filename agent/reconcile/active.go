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
// digest and shared, and while the running models' records are unchanged the same answer is
// returned again without allocating (the pipeline asks for every stream and every second,
// the outputs tracker every second), so callers must modify neither the slice nor the bytes.
func (rc *Reconciler) ActiveModels() ([]ActiveModel, error) {
	rc.mu.Lock()
	rc.assetMu.Lock()
	memo := rc.activeMemo
	rc.assetMu.Unlock()
	if memo.valid && memo.matchesLocked(rc.models) {
		rc.mu.Unlock()
		return memo.out, nil
	}
	var refs []activeRef
	for n, r := range rc.models {
		if r.Current == 0 || r.ActiveVersion != r.Current {
			continue
		}
		refs = append(refs, activeRef{name: n, version: r.Current, dataset: r.Dataset, datasetVersion: r.DatasetVersion,
			contract: r.ContractDigest, profile: r.ProfileDigest, output: r.OutputDigest})
	}
	rc.mu.Unlock()
	sort.Slice(refs, func(i, j int) bool { return refs[i].name < refs[j].name })
	out := make([]ActiveModel, 0, len(refs))
	used := map[string]bool{}
	complete := true // every named asset found: the answer holds until the records change
	for _, r := range refs {
		m := ActiveModel{Name: r.name, Version: r.version, Dataset: r.dataset, DatasetVersion: r.datasetVersion,
			Path: rc.store.CurrentPath(r.name)}
		for _, a := range []struct {
			digest string
			to     *[]byte
		}{{r.contract, &m.Contract}, {r.profile, &m.Profile}, {r.output, &m.Output}} {
			b, err := rc.assetBytes(a.digest)
			if err != nil {
				return nil, err
			}
			if a.digest != "" && b == nil {
				complete = false
			}
			*a.to, used[a.digest] = b, true
		}
		out = append(out, m)
	}
	rc.assetMu.Lock()
	for d := range rc.assetCache {
		if !used[d] {
			delete(rc.assetCache, d)
		}
	}
	rc.activeMemo = activeMemo{valid: complete, refs: refs, out: out}
	rc.assetMu.Unlock()
	return out, nil
}

// activeRef is what ActiveModels reads of one running model's record.
type activeRef struct {
	name                      string
	version                   int
	dataset                   string
	datasetVersion            int
	contract, profile, output string
}

// activeMemo is an answer of ActiveModels and the records it was computed from, sorted by name;
// valid is false when an asset it names was not in the store yet (it may arrive later).
type activeMemo struct {
	valid bool
	refs  []activeRef
	out   []ActiveModel
}

// matchesLocked reports whether models (rc.mu held) still hold exactly the running versions
// the memo was computed from. It allocates nothing.
func (m activeMemo) matchesLocked(models map[string]*modelRecord) bool {
	running := 0
	for n, r := range models {
		if r.Current == 0 || r.ActiveVersion != r.Current {
			continue
		}
		running++
		i := sort.Search(len(m.refs), func(i int) bool { return m.refs[i].name >= n })
		if i == len(m.refs) || m.refs[i] != (activeRef{name: n, version: r.Current, dataset: r.Dataset, datasetVersion: r.DatasetVersion,
			contract: r.ContractDigest, profile: r.ProfileDigest, output: r.OutputDigest}) {
			return false
		}
	}
	return running == len(m.refs)
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
