package reconcile

// Output returns the first running model by name (as Active does) with its output reference
// (shared/outputs.Reference JSON, fetched with the version): agent/outputs' Model. ok is false
// while no model runs or the running version has no output reference.
func (rc *Reconciler) Output() (model string, version int, reference []byte, ok bool) {
	rc.mu.Lock()
	var name string
	var r *modelRecord
	for n, rec := range rc.models {
		if rec.Current > 0 && rec.ActiveVersion == rec.Current && (name == "" || n < name) {
			name, r = n, rec
		}
	}
	if r == nil || r.OutputDigest == "" {
		rc.mu.Unlock()
		return "", 0, nil, false
	}
	version, digest := r.Current, r.OutputDigest
	if rc.outputKey == digest {
		b := rc.outputCache
		rc.mu.Unlock()
		return name, version, b, true
	}
	rc.mu.Unlock()
	b, err := rc.assetBytes(digest)
	if err != nil || b == nil {
		if err != nil {
			rc.log.Warn("read output reference", "model", name, "err", err)
		}
		return "", 0, nil, false
	}
	rc.mu.Lock()
	rc.outputKey, rc.outputCache = digest, b
	rc.mu.Unlock()
	return name, version, b, true
}
