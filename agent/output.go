package agent

// Output returns the first running model by name (as Active does) with its output reference
// (shared/outputs.Reference JSON, fetched with the version): agent/outputs' Model. ok is false
// while no model runs or the running version has no output reference.
func (a *Agent) Output() (model string, version int, reference []byte, ok bool) {
	a.mu.Lock()
	var name string
	var r *modelRecord
	for n, rec := range a.models {
		if rec.Current > 0 && rec.ActiveVersion == rec.Current && (name == "" || n < name) {
			name, r = n, rec
		}
	}
	if r == nil || r.OutputDigest == "" {
		a.mu.Unlock()
		return "", 0, nil, false
	}
	version, digest := r.Current, r.OutputDigest
	if a.outputKey == digest {
		b := a.outputCache
		a.mu.Unlock()
		return name, version, b, true
	}
	a.mu.Unlock()
	b, err := a.assetBytes(digest)
	if err != nil || b == nil {
		if err != nil {
			a.log.Warn("read output reference", "model", name, "err", err)
		}
		return "", 0, nil, false
	}
	a.mu.Lock()
	a.outputKey, a.outputCache = digest, b
	a.mu.Unlock()
	return name, version, b, true
}
