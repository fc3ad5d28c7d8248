package reconcile

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/driftline/driftline/agent/devicedb"
	"github.com/driftline/driftline/agent/modelstore"
	"github.com/driftline/driftline/shared/artifact"
	"github.com/driftline/driftline/shared/wire"
)

// Run acts on desired states, one at a time, until ctx ends. It is the only goroutine
// that changes MODELDIR, the chunk cache's pins and the model records' versions.
//
// A revision whose pull failed for a reason that may pass (a stall, too many attempts, a store
// error) is not marked as acted on: it is tried again after a backoff (retryMin doubling to
// retryMax), and at the next start, until it succeeds or a newer revision replaces it.
func (rc *Reconciler) Run(ctx context.Context) {
	var (
		retryB    []byte // the desired to try again, nil when none
		retryWait time.Duration
		retryT    = time.NewTimer(time.Hour)
	)
	retryT.Stop()
	defer retryT.Stop()
	act := func(b []byte) {
		for {
			rev, err := rc.handleDesired(ctx, b)
			switch {
			case errors.Is(err, errPreempted):
				// A newer revision arrived during the pull: act on it now; what was fetched
				// stays in the cache.
				if nb := rc.conn.TakeDesired(); nb != nil {
					b = nb
					continue
				}
			case err == nil && rev.RetryAfter():
				retryWait = min(max(2*retryWait, rc.retryMin), retryMax)
				retryB = b
				retryT.Reset(retryWait)
				rc.log.Info("desired state will be tried again", "in", retryWait)
				return
			}
			retryB, retryWait = nil, 0
			retryT.Stop()
			return
		}
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-rc.conn.Frames().Ready():
			if b, ok := rc.conn.Frames().Pop(); ok {
				rc.fetch.drainIdle(b)
			}
		case <-rc.conn.SharedFrames().Ready():
			// A frame of a shared subscription that has just ended: nothing wants it.
			rc.conn.SharedFrames().Drain()
		case <-rc.conn.DesiredSignal():
			if b := rc.conn.TakeDesired(); b != nil {
				act(b)
			}
		case <-retryT.C:
			if retryB != nil {
				act(retryB)
			}
		}
	}
}

// retryMax bounds the wait before a failed pull is tried again.
const retryMax = 10 * time.Minute

// transient reports whether a pull failure may pass by itself (so the revision is retried):
// a stall, too many attempts, a store or disk error. Refusals of what the hub sent (signature,
// manifest, not found) and failed health checks are final for the revision.
func transient(err error) bool {
	switch {
	case errors.Is(err, ErrRejected), errors.Is(err, wire.ErrNotFound), errors.Is(err, modelstore.ErrHealthCheck),
		errors.Is(err, modelstore.ErrConflict), errors.Is(err, modelstore.ErrDigestMismatch), errors.Is(err, artifact.ErrFileDigest):
		return false
	}
	return true
}

// handleDesired acts on one desired payload if it verifies and its revision is above the last
// acted on, and returns each model's outcome. The revision is persisted only when no model is
// to be retried, so a restart or a preemption resumes it (chunks already verified are in the
// cache and are not fetched again). Only ctx's end and preemption are returned as errors.
func (rc *Reconciler) handleDesired(ctx context.Context, b []byte) (Revision, error) {
	taken := time.Now()
	d, ok := rc.trust.Desired(b)
	if !ok {
		return Revision{}, nil
	}
	rc.taken = taken
	rc.log.Info("acting on desired state", "rev", d.Rev, "models", len(d.Models))
	rev := Revision{Rev: d.Rev, Models: make(map[string]Outcome, len(d.Models))}
	rc.mu.Lock()
	rc.reportRev = d.Rev
	rc.mu.Unlock()
	preempt := func() bool {
		nb := rc.conn.PeekDesired()
		return nb != nil && rc.trust.Preempts(nb, d.Rev)
	}
	want := map[string]bool{}
	models := append([]wire.DesiredModel(nil), d.Models...)
	sort.Slice(models, func(i, j int) bool { return models[i].Name < models[j].Name })
	for _, m := range models {
		want[m.Name] = true
		out, err := rc.applyModel(ctx, m, preempt)
		if err != nil {
			return rev, err
		}
		rev.Models[m.Name] = out
	}
	rc.mu.Lock()
	var gone []string
	for n := range rc.models {
		if !want[n] {
			gone = append(gone, n)
		}
	}
	rc.mu.Unlock()
	sort.Strings(gone)
	for _, n := range gone {
		rc.deactivate(n)
	}
	rc.gcAssets()
	if !rev.RetryAfter() {
		// The records first: a revision recorded as acted on is not acted on again after a
		// crash, so what its models' records say must be on disk before it.
		rc.flushRecords()
		if err := rc.saveRev(d.Rev); err != nil {
			rc.log.Error("persist desired revision", "err", err)
		}
	}
	rc.changed()
	return rev, nil
}

// pullSlot is one pull's hold on Config.PullSlots (fleet mode; ch nil: no limit). A pull whose
// chunks may come on the model's shared topic listens there before it holds a slot (the fetch
// takes the slot when it can: listening); everything else a pull does, the manifest excepted,
// happens while it holds one.
type pullSlot struct {
	ch   chan struct{}
	held bool
}

// take waits for the slot (no limit, or held already: at once).
func (s *pullSlot) take(ctx context.Context) error {
	if s == nil || s.ch == nil || s.held {
		return nil
	}
	select {
	case s.ch <- struct{}{}:
		s.held = true
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// waiting returns the channel a select sends on to take the slot: nil (never ready) when there
// is no limit or the slot is held. A successful send must be followed by took.
func (s *pullSlot) waiting() chan struct{} {
	if s == nil || s.held {
		return nil
	}
	return s.ch
}

// took records a slot taken by a send on waiting's channel.
func (s *pullSlot) took() { s.held = true }

// release gives the slot back; it may be called more than once.
func (s *pullSlot) release() {
	if s != nil && s.held {
		s.held = false
		<-s.ch
	}
}

// applyModel brings one model to the desired version and returns the outcome. Failures end in
// state failed with the reason in last_error; only ctx's end and preemption are returned as
// errors.
func (rc *Reconciler) applyModel(ctx context.Context, m wire.DesiredModel, preempt func() bool) (Outcome, error) {
	log := rc.log.With("model", m.Name, "version", m.Version)
	if err := modelstore.ValidName(m.Name); err != nil {
		rc.reject(ReasonUnknownModel, "model name unusable as a directory", "model", m.Name, "err", err)
		rc.fail(m, fmt.Errorf("%w: %v", ErrRejected, err))
		return OutcomeFailed, nil
	}
	rc.refreshLinks(m.Name)
	cur, curErr := rc.store.Current(m.Name)
	if curErr == nil && cur.Version == m.Version && cur.ManifestDigest == m.ManifestDigest {
		// Already running: make sure what the pipeline needs is here, and say so.
		if err := rc.fetchAssets(ctx, m, preempt); err != nil {
			return rc.pullFailed(m, err)
		}
		rc.setState(m.Name, rc.stateFor(m.Name, wire.StateActive), func(r *modelRecord) { rc.adopt(r, m); r.Target = 0; r.LastError = "" })
		rc.dropPartials(m.Name) // e.g. of a pull this desired preempted
		return OutcomeActive, nil
	}
	if rc.trust.Revoked(m.Name, m.Version) {
		// Withdrawn by the hub: never activated again, whatever signature it comes with.
		rc.reject(ReasonRevoked, "revoked model version refused", "model", m.Name, "version", m.Version)
		rc.fail(m, fmt.Errorf("%w: %s@%d was revoked", ErrRejected, m.Name, m.Version))
		return OutcomeFailed, nil
	}
	back := curErr == nil && m.Version < cur.Version
	rc.setState(m.Name, wire.StateNotified, func(r *modelRecord) { r.Target = m.Version; r.RolloutID = m.RolloutID; r.LastError = "" })
	rc.stage(StageNotified)

	// A pull slot (fleet mode) bounds the chunks a pull asks on its own topic: it is held from
	// the download (or, for a pull that listens on the model's shared topic, from when one is
	// free, if the wave's publishes have not brought everything by then) until the file is
	// staged and the contract and profile are here. The manifest, contract and profile are small
	// and fetched without one: the pull must know the chunks it may take from the shared topic
	// while it waits, and one that got them all there needs no slot at all (issue 18).
	slot := &pullSlot{ch: rc.cfg.PullSlots}
	defer slot.release()
	man, err := rc.manifest(ctx, m, preempt)
	if err != nil {
		return rc.pullFailed(m, err)
	}
	rc.failpoint("manifest")
	rc.stage(StageManifest)
	if err := rc.pinChunks(m, man); err != nil {
		return rc.pullFailed(m, err)
	}

	stageErr, err := rc.downloadAndStage(ctx, m, man, preempt, slot)
	if err != nil {
		return rc.pullFailed(m, err)
	}
	if stageErr == nil {
		rc.stage(StageStaged)
	}
	if err := rc.fetchAssets(ctx, m, preempt); err != nil {
		return rc.pullFailed(m, err)
	}
	rc.stage(StageAssets)
	slot.release()

	rc.setState(m.Name, wire.StateActivating, nil)
	// The activation runs to its end even when a newer desired arrives: a health check cut
	// short leaves the journal pending until the next start (modelstore).
	err = stageErr
	if err == nil {
		err = rc.store.Activate(ctx, m.Name, m.Version)
	}
	rc.refreshLinks(m.Name)
	if ctx.Err() != nil {
		return 0, ctx.Err()
	}
	if err != nil {
		log.Warn("activation failed", "err", err)
		rc.m.Activations.WithLabelValues(ResultFailed).Inc()
		rc.setState(m.Name, wire.StateFailed, func(r *modelRecord) { r.LastError = err.Error() })
		rc.releasePins(m.Name)
		out := failure(err) // retry: a disk or store error, not a verdict on the version
		if out == OutcomeFailed {
			rc.dropPartials(m.Name)
		}
		return out, nil
	}
	result, st := ResultActive, wire.StateActive
	if back {
		result, st = ResultRolledBack, wire.StateRolledBack
	}
	rc.m.Activations.WithLabelValues(result).Inc()
	log.Info("model version running", "state", st)
	rc.setState(m.Name, st, func(r *modelRecord) { rc.adopt(r, m); r.Target = 0; r.LastError = "" })
	rc.stage(StageActive)
	rc.releasePins(m.Name)
	rc.dropPartials(m.Name)
	return OutcomeActive, nil
}

// pinChunks pins the chunks of man in the chunk cache under the version's pin, so that they are
// kept while the pull runs, and records the pin in the model's record (written after the lock
// is released).
func (rc *Reconciler) pinChunks(m wire.DesiredModel, man artifact.Manifest) error {
	pin := pinName(m.Name, m.Version)
	digests := make([]string, 0, len(man.Chunks))
	for _, c := range man.Chunks {
		digests = append(digests, c.Digest)
	}
	if err := rc.cache.Pin(pin, digests); err != nil {
		return err
	}
	rc.mu.Lock()
	added := false
	if r := rc.models[m.Name]; r != nil && !contains(r.Pins, pin) {
		r.Pins = append(r.Pins, pin)
		added = true
	}
	rc.mu.Unlock()
	if added {
		_ = rc.saveRecord(m.Name)
	}
	return nil
}

// dropPartials deletes the partial downloads of name once nothing will resume them: the model
// runs what is desired, or its pull failed for good. A pull that failed for a reason that may
// pass keeps its partial for the retry, and a preempted one for the next pull, which reads it.
func (rc *Reconciler) dropPartials(name string) {
	if err := rc.store.DropPartials(name, 0); err != nil {
		rc.log.Warn("remove partial downloads", "model", name, "err", err)
	}
}

// stateFor keeps rolled_back for a version reached by going back, instead of active.
func (rc *Reconciler) stateFor(name string, st wire.State) wire.State {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if r := rc.models[name]; r != nil && r.State == wire.StateRolledBack && st == wire.StateActive {
		return wire.StateRolledBack
	}
	return st
}

// adopt records what the active version m brought.
func (rc *Reconciler) adopt(r *modelRecord, m wire.DesiredModel) {
	r.ActiveVersion, r.ManifestDigest = m.Version, m.ManifestDigest
	r.ContractDigest, r.ProfileDigest = m.ContractDigest, m.ProfileDigest
	r.OutputDigest = m.OutputDigest
	r.Dataset, r.DatasetVersion = m.Dataset, m.DatasetVersion
	r.RolloutID = m.RolloutID
}

// pullFailed records a failed pull and returns its outcome, or passes ctx's end and preemption
// through.
func (rc *Reconciler) pullFailed(m wire.DesiredModel, err error) (Outcome, error) {
	if errors.Is(err, errPreempted) || canceled(err) {
		return 0, err
	}
	rc.fail(m, err)
	out := failure(err)
	if out == OutcomeFailed {
		rc.dropPartials(m.Name)
	}
	return out, nil
}

func (rc *Reconciler) fail(m wire.DesiredModel, err error) {
	rc.log.Warn("model version not activated", "model", m.Name, "version", m.Version, "err", err)
	rc.m.Activations.WithLabelValues(ResultFailed).Inc()
	rc.setState(m.Name, wire.StateFailed, func(r *modelRecord) { r.Target = m.Version; r.LastError = err.Error() })
	if modelstore.ValidName(m.Name) == nil {
		rc.releasePins(m.Name)
	}
}

// manifest returns m's manifest, from the asset store or fetched, after checking its digest
// (the fetch verifies it), its form and its signature against the trusted keys.
func (rc *Reconciler) manifest(ctx context.Context, m wire.DesiredModel, preempt func() bool) (artifact.Manifest, error) {
	b, err := rc.asset(ctx, kindManifest, m.ManifestDigest, preempt)
	if err != nil {
		return artifact.Manifest{}, fmt.Errorf("fetch manifest: %w", err)
	}
	// The fetch checked that b hashes to m.ManifestDigest; the approval signature binds that
	// digest with the name, version, contract, profile and dataset version.
	if err := rc.trust.Approval(m); err != nil {
		reason := ReasonBadSignature
		switch {
		case errors.Is(err, artifact.ErrUnsigned):
			reason = ReasonUnsigned
		case errors.Is(err, artifact.ErrUnknownKey):
			reason = ReasonUnknownKey
		}
		rc.reject(reason, "approval signature refused", "model", m.Name, "version", m.Version, "err", err)
		rc.deleteAsset(m.ManifestDigest)
		return artifact.Manifest{}, fmt.Errorf("%w: %w", ErrRejected, err)
	}
	man, err := artifact.DecodeManifest(b)
	if err == nil && m.Size > 0 && man.Size != m.Size {
		err = fmt.Errorf("%w: manifest says %d bytes, desired %d", artifact.ErrBadManifest, man.Size, m.Size)
	}
	if err != nil {
		rc.reject(ReasonBadManifest, "manifest refused", "model", m.Name, "version", m.Version, "err", err)
		rc.deleteAsset(m.ManifestDigest)
		return artifact.Manifest{}, fmt.Errorf("%w: %w", ErrRejected, err)
	}
	return man, nil
}

// downloadAndStage brings name@version's file to disk as a staged version directory: into a
// resumable modelstore.Partial it writes the chunks this device already holds (fillLocal), then
// fetches the rest, writing each at its places as soon as it is verified, while hashLoop hashes
// the file's completed prefix; modelstore then keeps the file only if it hashes to man.Digest.
// err is the download's failure (the partial download stays on disk, to be resumed); stageErr is
// the staging's result. man is valid (rc.manifest decoded it).
//
// slot is the pull's slot: taken before the fetch, or, while the pull listens on the model's
// shared topic, by the fetch when one is free (fetcher.fetch); a download that needs no fetch
// (everything local) runs without it.
func (rc *Reconciler) downloadAndStage(ctx context.Context, m wire.DesiredModel, man artifact.Manifest, preempt func() bool, slot *pullSlot) (stageErr, err error) {
	p, done, err := rc.store.OpenPartial(m.Name, m.Version, m.ManifestDigest, man.Digest, man.Size)
	if err != nil || done {
		return err, nil
	}
	as := newAssembly(p, man)
	reused, err := rc.fillLocal(ctx, m.Name, m.Version, as)
	if err != nil {
		p.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return err, nil
	}
	// What other partial downloads of this model held is in this one now.
	if err := rc.store.DropPartials(m.Name, m.Version); err != nil {
		rc.log.Warn("remove other partial downloads", "model", m.Name, "err", err)
	}
	rc.m.ChunksReused.Add(float64(reused))
	missing := as.missing()
	rc.log.Info("downloading model", "model", m.Name, "version", m.Version, "chunks", len(man.Chunks), "missing", len(missing), "reused", reused, "bytes", man.Size, "resumed", p.Resumed())
	rc.setState(m.Name, wire.StateDownloading, func(r *modelRecord) { r.BytesDone, r.BytesTotal = as.done(), man.Size })
	rc.stage(StageDownloading)

	hashCtx, stopHash := context.WithCancel(ctx)
	defer stopHash()
	hashed := make(chan error, 1)
	go func() { hashed <- as.hashLoop(hashCtx) }()
	// Listen on the model's shared chunk topic for the pull only (issue 18), from before the
	// pull holds a slot: a device that waits for one takes the chunks published meanwhile.
	var shared *SharedSub
	// Fleet mode bounds the bytes the process's listeners may hold at once: each is charged
	// twice its model's size (listenCharge).
	var listening int64
	unsubscribe := func() {
		if shared != nil {
			rc.conn.UnsubscribeShared(shared)
			shared = nil
		}
		if listening > 0 {
			rc.cfg.ListenBudget.Release(listening)
			listening = 0
		}
	}
	if len(missing) > 0 {
		if listening, err = rc.takeListen(ctx, listenCharge(man.Size)); err != nil {
			stopHash()
			<-hashed
			p.Close()
			return nil, err
		}
		shared = rc.conn.SubscribeShared(ctx, m.Name)
		defer unsubscribe()
		if shared != nil {
			rc.stage(StageListening)
		}
		if shared == nil {
			if err := slot.take(ctx); err != nil {
				stopHash()
				<-hashed
				p.Close()
				return nil, err
			}
		}
	}
	err = rc.fetchChunksAndAssets(ctx, m, man, as, missing, preempt, shared, slot)
	// Done listening: the wave's later publishes are for devices that joined later, and
	// staging (a hash and an fsync) can take a while.
	unsubscribe()
	if left := len(as.missing()); err == nil && left > 0 {
		err = fmt.Errorf("download of %s@%d ended with %d chunks missing", m.Name, m.Version, left)
	}
	if err == nil {
		rc.stage(StageChunks)
	}
	if err != nil {
		stopHash()
		<-hashed
		p.Close()
		return nil, err
	}
	if err := <-hashed; err != nil {
		p.Discard() // unreadable: the retry starts over
		return err, nil
	}
	return p.Commit(ctx), nil
}

// fetchChunksAndAssets fetches the missing chunks of man into as, and with them the contract,
// profile and output reference of m the device lacks (into the asset store). shared and slot
// are the pull's listening subscription and pull slot (fetcher.fetch).
func (rc *Reconciler) fetchChunksAndAssets(ctx context.Context, m wire.DesiredModel, man artifact.Manifest, as *assembly, missing []string, preempt func() bool, shared *SharedSub, slot *pullSlot) error {
	// The contract, profile and output reference the device lacks are asked with the first
	// chunks: their answers come on the device's own topic while the wave's shared publish is
	// held back and sent, instead of after it, when the whole wave asks for them at once.
	want, assets := missing, rc.assetsToFetch(m, as)
	if len(missing) > 0 && len(assets) > 0 {
		want = append(append([]string(nil), missing...), keys(assets)...)
	}
	return rc.fetch.fetch(ctx, kindChunk, want, func(d string, data []byte) error {
		if assets[d] {
			b := append([]byte(nil), data...)
			putPlainBuf(data)
			return rc.assets.Set([]byte(d), b)
		}
		err := as.put(d, data, -1)
		putPlainBuf(data)
		return err
	}, func(d string) {
		if assets[d] {
			return
		}
		rc.m.FetchedChunks.Inc()
		rc.progress(m.Name, as.done(), man.Size)
		if rc.cfg.OnChunk != nil {
			rc.cfg.OnChunk()
		}
	}, preempt, shared, slot)
}

// assetsToFetch returns the digests of m's contract, profile and output reference that are not
// in the asset store and are not chunks of the file as (those are fetched on their own after the
// download, by fetchAssets).
func (rc *Reconciler) assetsToFetch(m wire.DesiredModel, as *assembly) map[string]bool {
	out := map[string]bool{}
	for _, d := range []string{m.ContractDigest, m.ProfileDigest, m.OutputDigest} {
		if d == "" || out[d] || len(as.at[d]) > 0 {
			continue
		}
		if b, err := rc.assets.Get([]byte(d)); err == nil && artifact.DigestOf(b) == d {
			continue
		}
		out[d] = true
	}
	return out
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// listenCharge is what a listener of a model of size bytes is charged against the listening
// budget: the frames of one publish of the wave queued for it, and as many waiting for its
// verify workers (a fetch takes shared frames while fewer than a window wait).
func listenCharge(size int64) int64 { return 2 * size }

// takeListen waits until the listening budget (fleet mode; none: at once) has size bytes free
// and takes them. It returns the bytes taken (0: no budget), which the caller releases.
func (rc *Reconciler) takeListen(ctx context.Context, size int64) (int64, error) {
	if rc.cfg.ListenBudget == nil {
		return 0, nil
	}
	return rc.cfg.ListenBudget.Take(ctx, size)
}

// fetchAssets makes sure the contract and reference profile m names are in the asset store.
func (rc *Reconciler) fetchAssets(ctx context.Context, m wire.DesiredModel, preempt func() bool) error {
	for _, d := range []string{m.ContractDigest, m.ProfileDigest, m.OutputDigest} {
		if d == "" {
			continue
		}
		if _, err := rc.asset(ctx, kindAsset, d, preempt); err != nil {
			return fmt.Errorf("fetch contract or profile %s: %w", d, err)
		}
	}
	return nil
}

// releasePins unpins every set of name except those of its current and previous versions.
func (rc *Reconciler) releasePins(name string) {
	keep := map[string]bool{}
	if v, err := rc.store.Current(name); err == nil {
		keep[pinName(name, v.Version)] = true
	}
	if v, err := rc.store.Previous(name); err == nil {
		keep[pinName(name, v.Version)] = true
	}
	// The pins are read and written back under rc.mu, the cache's commits made without it
	// (Run is the only goroutine that changes pins).
	rc.mu.Lock()
	r := rc.models[name]
	var pins []string
	if r != nil {
		pins = append(pins, r.Pins...)
	}
	rc.mu.Unlock()
	if r == nil {
		return
	}
	var kept []string
	for _, p := range pins {
		if keep[p] {
			kept = append(kept, p)
			continue
		}
		if err := rc.cache.Unpin(p); err != nil {
			rc.log.Warn("unpin", "set", p, "err", err)
			kept = append(kept, p)
		}
	}
	rc.mu.Lock()
	r.Pins = kept
	rc.mu.Unlock()
	if err := rc.saveRecord(name); err != nil {
		rc.log.Error("persist model record", "model", name, "err", err)
	}
}

// deactivate handles a model no longer in the desired state: the chunks of its current and
// previous versions go into the chunk cache (until evicted: assigning it again costs little),
// its directory is renamed away (so current disappears in one step) and deleted, its chunks
// unpinned, its record dropped.
func (rc *Reconciler) deactivate(name string) {
	rc.log.Info("model removed from desired state: deactivating", "model", name)
	if modelstore.ValidName(name) == nil {
		dir := filepath.Join(rc.store.Dir(), name)
		if _, err := os.Stat(dir); err == nil {
			for _, get := range []func(string) (modelstore.Version, error){rc.store.Current, rc.store.Previous} {
				if ver, err := get(name); err == nil {
					rc.KeepChunks(ver, nil)
				}
			}
			b := make([]byte, 4)
			_, _ = rand.Read(b)
			trash := filepath.Join(rc.store.Dir(), ".removed-"+name+"-"+hex.EncodeToString(b))
			if err := os.Rename(dir, trash); err != nil {
				rc.log.Error("deactivate model", "model", name, "err", err)
				return
			}
			if err := os.RemoveAll(trash); err != nil {
				rc.log.Warn("remove deactivated model", "model", name, "err", err)
			}
		}
	}
	rc.mu.Lock()
	r := rc.models[name]
	delete(rc.models, name)
	rc.mu.Unlock()
	if err := rc.saveRecord(name); err != nil {
		rc.log.Error("drop model record", "model", name, "err", err)
	}
	if r != nil {
		for _, p := range r.Pins {
			if err := rc.cache.Unpin(p); err != nil {
				rc.log.Warn("unpin", "set", p, "err", err)
			}
		}
	}
}

// asset returns the object digest from the asset store, fetching and storing it when absent.
// The fetch verifies the digest.
func (rc *Reconciler) asset(ctx context.Context, kind objectKind, digest string, preempt func() bool) ([]byte, error) {
	key := []byte(digest)
	b, err := rc.assets.Get(key)
	if err == nil && artifact.DigestOf(b) == digest {
		return b, nil
	}
	if err != nil && !errors.Is(err, devicedb.ErrNotFound) {
		return nil, err
	}
	var got []byte
	err = rc.fetch.fetch(ctx, kind, []string{digest}, func(_ string, data []byte) error {
		got = append([]byte(nil), data...)
		return rc.assets.Set(key, got)
	}, func(string) {}, preempt, nil, nil)
	if err != nil {
		return nil, err
	}
	return got, nil
}

func (rc *Reconciler) deleteAsset(digest string) {
	if err := rc.assets.Delete([]byte(digest)); err != nil {
		rc.log.Warn("delete asset", "digest", digest, "err", err)
	}
}

// gcAssets deletes manifests, contracts and profiles no model record and no version on disk
// refers to.
func (rc *Reconciler) gcAssets() {
	keep := map[string]bool{}
	rc.mu.Lock()
	names := make([]string, 0, len(rc.models))
	for n, r := range rc.models {
		names = append(names, n)
		for _, d := range []string{r.ManifestDigest, r.ContractDigest, r.ProfileDigest, r.OutputDigest} {
			keep[d] = true
		}
	}
	rc.mu.Unlock()
	for _, n := range names {
		if v, err := rc.store.Current(n); err == nil {
			keep[v.ManifestDigest] = true
		}
		if v, err := rc.store.Previous(n); err == nil {
			keep[v.ManifestDigest] = true
		}
		// A partial download kept for a retry or the next pull is read with its manifest.
		if ps, err := rc.store.Partials(n); err == nil {
			for _, p := range ps {
				keep[p.ManifestDigest] = true
			}
		}
	}
	var drop [][]byte
	err := rc.assets.IterateKeys(false, func(k []byte, _ int64) error {
		if !keep[string(k)] {
			drop = append(drop, append([]byte(nil), k...))
		}
		return nil
	})
	if err != nil {
		rc.log.Warn("list assets", "err", err)
		return
	}
	for _, k := range drop {
		if err := rc.assets.Delete(k); err != nil {
			rc.log.Warn("delete asset", "err", err)
		}
	}
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
